import type { StreamMessage } from './store.ts';
import type { RegistryView, Session } from './types.ts';

/** Thrown for an answer with an error; `code` is the server's stable ADMIN_* code. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly status: number,
  ) {
    super(message);
  }
}

async function json<T>(res: Response): Promise<T> {
  if (res.status === 401) {
    window.location.assign('/login?expired=1');
    throw new ApiError('not logged in', 'ADMIN_UNAUTHORIZED', 401);
  }
  const body = (await res.json().catch(() => ({}))) as { error?: { code: string; message: string } };
  if (!res.ok)
    throw new ApiError(body.error?.message ?? `HTTP ${res.status}`, body.error?.code ?? 'ERROR', res.status);
  return body as T;
}

export const getSession = async (): Promise<Session> => json(await fetch('/api/session'));
export const getRegistry = async (): Promise<RegistryView> => json(await fetch('/api/registry'));

/** An action: JSON, with the session's CSRF token (the cookie alone is refused). */
export async function act<T>(session: Session, path: string, body: unknown): Promise<T> {
  const res = await fetch(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-csrf-token': session.csrf ?? '' },
    body: JSON.stringify(body),
  });
  return json(res);
}

const STREAM_EVENTS = ['state', 'record', 'tunnels', 'sample', 'limits', 'gateway', 'dropped'] as const;

/**
 * The server's event stream: history first, then live. EventSource reconnects by itself; each reconnect
 * starts with a fresh `state`, so the page is whole again after a break. Returns a function that closes it.
 */
export function openStream(
  onMessage: (message: StreamMessage) => void,
  onRegistryChanged: () => void,
): () => void {
  const source = new EventSource('/api/events');
  for (const event of STREAM_EVENTS) {
    source.addEventListener(event, (e) => {
      onMessage({ event, data: JSON.parse((e as MessageEvent<string>).data) } as StreamMessage);
    });
  }
  source.addEventListener('registry_changed', onRegistryChanged);
  source.addEventListener('open', () => onMessage({ event: 'connection', data: { open: true } }));
  source.addEventListener('error', () => {
    onMessage({ event: 'connection', data: { open: false } });
    // EventSource gives up on an error answer (a session that ended): find out, and go to the login.
    if (source.readyState === EventSource.CLOSED) void getSession().catch(() => undefined);
  });
  return () => source.close();
}
