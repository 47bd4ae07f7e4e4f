import type { Decision, Tunnel } from './types.ts';

export interface TopologyNode {
  readonly id: string;
  readonly kind: 'agent' | 'gateway' | 'destination';
  readonly label: string;
  readonly x: number;
  readonly y: number;
}

export interface TopologyEdge {
  readonly from: string;
  readonly to: string;
  /** The newest decision on this edge, if recent enough to light it up. */
  readonly lit: 'allowed' | 'denied' | undefined;
  /** Open tunnels carried. */
  readonly open: number;
}

export interface Topology {
  readonly nodes: readonly TopologyNode[];
  readonly edges: readonly TopologyEdge[];
}

/** Nodes per column at most; the rest are the least recently seen and are left out. */
export const MAX_PER_COLUMN = 12;
/** An edge stays lit this long after a decision on it. */
export const LIT_MS = 3000;

/**
 * Agents → gateways → destinations, from the recent decisions and the open tunnels: each agent and
 * destination seen, each path between them through the gateway that decided, lit green or red for a few
 * seconds after an allow or a deny. Columns at fixed x, nodes spread evenly down a 0..1 square.
 */
export function layoutTopology(
  decisions: readonly Decision[],
  tunnels: readonly Tunnel[],
  gateways: readonly string[],
  now: number,
): Topology {
  const agents = new Map<string, number>();
  const dests = new Map<string, number>();
  const gws = new Map<string, number>(gateways.map((g) => [g, 0]));
  const edges = new Map<
    string,
    { from: string; to: string; lit: TopologyEdge['lit']; litAt: number; open: number }
  >();
  const edge = (from: string, to: string) => {
    const key = `${from}\u0000${to}`;
    let e = edges.get(key);
    if (e === undefined) {
      e = { from, to, lit: undefined, litAt: 0, open: 0 };
      edges.set(key, e);
    }
    return e;
  };
  // Newest first: the first time a node is seen is its most recent.
  decisions.forEach((d, i) => {
    const agent = d.source_identity ?? '(no identity)';
    const dest = d.dest_authority ?? '(bad request)';
    if (!agents.has(agent)) agents.set(agent, i);
    if (!dests.has(dest)) dests.set(dest, i);
    if (!gws.has(d.gateway)) gws.set(d.gateway, i);
    const t = Date.parse(d.time);
    const lit = d.result === 'allowed' ? 'allowed' : 'denied';
    for (const e of [edge(`a:${agent}`, `g:${d.gateway}`), edge(`g:${d.gateway}`, `d:${dest}`)]) {
      if (now - t <= LIT_MS && t >= e.litAt && e.lit === undefined) {
        e.lit = lit;
        e.litAt = t;
      }
    }
  });
  for (const t of tunnels) {
    if (!agents.has(t.source_identity)) agents.set(t.source_identity, -1);
    if (!dests.has(t.dest_authority)) dests.set(t.dest_authority, -1);
    edge(`a:${t.source_identity}`, `g:${t.gateway}`).open++;
    edge(`g:${t.gateway}`, `d:${t.dest_authority}`).open++;
  }
  const column = (names: Map<string, number>, kind: TopologyNode['kind'], prefix: string, x: number) => {
    const kept = [...names.entries()]
      .sort((a, b) => a[1] - b[1])
      .slice(0, MAX_PER_COLUMN)
      .map(([n]) => n)
      .sort();
    return kept.map((label, i) => ({
      id: `${prefix}${label}`,
      kind,
      label,
      x,
      y: (i + 1) / (kept.length + 1),
    }));
  };
  const nodes = [
    ...column(agents, 'agent', 'a:', 0.14),
    ...column(gws, 'gateway', 'g:', 0.5),
    ...column(dests, 'destination', 'd:', 0.86),
  ];
  const present = new Set(nodes.map((n) => n.id));
  return {
    nodes,
    edges: [...edges.values()]
      .filter((e) => present.has(e.from) && present.has(e.to))
      .map(({ from, to, lit, open }) => ({ from, to, lit, open })),
  };
}
