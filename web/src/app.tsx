/** @jsxRuntime automatic @jsxImportSource preact */
import { useCallback, useEffect, useReducer, useState } from 'preact/hooks';
import { act, getRegistry, getSession, openStream } from './api.ts';
import { initialState, reduce } from './store.ts';
import type { RegistryView, Session } from './types.ts';
import { AuditView } from './views/audit.tsx';
import { BandwidthView } from './views/bandwidth.tsx';
import { DecisionsView } from './views/decisions.tsx';
import { Overview } from './views/overview.tsx';
import { RegistryPanel } from './views/registry.tsx';
import { TunnelsView } from './views/tunnels.tsx';

const TABS = ['overview', 'decisions', 'tunnels', 'bandwidth', 'registry', 'audit'] as const;
type Tab = (typeof TABS)[number];

export function App() {
  const [state, dispatch] = useReducer(reduce, initialState);
  const [session, setSession] = useState<Session | undefined>();
  const [registry, setRegistry] = useState<RegistryView | undefined>();
  const [registryError, setRegistryError] = useState<string | undefined>();
  const [tab, setTab] = useState<Tab>(() => {
    const hash = window.location.hash.slice(1);
    return (TABS as readonly string[]).includes(hash) ? (hash as Tab) : 'overview';
  });
  const [now, setNow] = useState(Date.now());

  const loadRegistry = useCallback(() => {
    getRegistry().then(
      (r) => {
        setRegistry(r);
        setRegistryError(undefined);
      },
      (e: Error) => setRegistryError(e.message),
    );
  }, []);

  useEffect(() => {
    void getSession().then(setSession);
    loadRegistry();
    const close = openStream(dispatch, loadRegistry);
    // The topology's lit edges fade on the clock, not only on new events.
    const tick = setInterval(() => setNow(Date.now()), 500);
    return () => {
      close();
      clearInterval(tick);
    };
  }, [loadRegistry]);

  // New rows are not announced by the registry (only changes are), so the registry tab re-reads on
  // opening and every few seconds while open.
  useEffect(() => {
    if (tab !== 'registry') return;
    loadRegistry();
    const poll = setInterval(loadRegistry, 5000);
    return () => clearInterval(poll);
  }, [tab, loadRegistry]);

  const select = (t: Tab) => {
    setTab(t);
    window.history.replaceState(null, '', `#${t}`);
  };
  const logout = async () => {
    if (session !== undefined) await act(session, '/api/logout', {}).catch(() => undefined);
    window.location.assign('/login?out=1');
  };
  const canAct = session?.role === 'admin';

  return (
    <div class="shell">
      <header>
        <h1>agent-gateway</h1>
        <div class="gateways" data-testid="gateway-status">
          {state.gateways.map((g) => (
            <span
              key={g.gateway}
              class={`pill ${g.connected && g.ready !== false ? 'ok' : 'bad'}`}
              title={g.connected ? g.checks.map((c) => `${c.name}: ${c.detail}`).join('\n') : g.detail}
            >
              {g.gateway} {g.connected ? (g.ready === false ? 'not ready' : 'live') : 'unreachable'}
            </span>
          ))}
          {!state.connected && <span class="pill bad">dashboard stream reconnecting…</span>}
        </div>
        <div class="who" data-testid="who">
          {session === undefined
            ? ''
            : `${session.name} · ${session.role === 'admin' ? 'admin' : 'read-only'}`}
          <button type="button" class="link" onClick={logout}>
            log out
          </button>
        </div>
      </header>
      <nav>
        {TABS.map((t) => (
          <button
            type="button"
            key={t}
            class={t === tab ? 'tab active' : 'tab'}
            data-tab={t}
            onClick={() => select(t)}
          >
            {t}
          </button>
        ))}
      </nav>
      {state.dropped > 0 && (
        <p class="warning">
          {state.dropped} events could not be delivered to this page (it fell behind); reload for the full
          history.
        </p>
      )}
      <main>
        {tab === 'overview' && <Overview state={state} now={now} />}
        {tab === 'decisions' && <DecisionsView decisions={state.decisions} />}
        {tab === 'tunnels' && <TunnelsView state={state} session={session} canAct={canAct} />}
        {tab === 'bandwidth' && <BandwidthView series={state.bandwidth} now={now} />}
        {tab === 'registry' && (
          <RegistryPanel
            registry={registry}
            error={registryError}
            tunnels={state.tunnels}
            session={session}
            canAct={canAct}
            reload={loadRegistry}
          />
        )}
        {tab === 'audit' && <AuditView audit={state.audit} />}
      </main>
    </div>
  );
}
