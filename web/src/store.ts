import type {
  Decision,
  FeedRecord,
  GatewayState,
  IdentityLimit,
  IdentitySeries,
  OperatorAction,
  RatePoint,
  Tunnel,
  TunnelClosed,
} from './types.ts';

/** Records the page keeps (the server keeps more; a reload gets its history again). */
export const MAX_DECISIONS = 2000;
const MAX_CLOSES = 500;
const MAX_POINTS = 601;

export interface DashboardState {
  readonly gateways: readonly GatewayState[];
  readonly decisions: readonly Decision[];
  readonly closes: readonly TunnelClosed[];
  readonly audit: readonly OperatorAction[];
  readonly tunnels: readonly Tunnel[];
  readonly tunnelsTotal: number;
  readonly bandwidth: readonly IdentitySeries[];
  /** Events the server could not send us (this page was too slow), since load. */
  readonly dropped: number;
  readonly connected: boolean;
}

export const initialState: DashboardState = {
  gateways: [],
  decisions: [],
  closes: [],
  audit: [],
  tunnels: [],
  tunnelsTotal: 0,
  bandwidth: [],
  dropped: 0,
  connected: false,
};

/** One message of the server's event stream (`/api/events`), parsed. */
export type StreamMessage =
  | { readonly event: 'state'; readonly data: Record<string, unknown> }
  | { readonly event: 'record'; readonly data: FeedRecord }
  | { readonly event: 'tunnels'; readonly data: { tunnels: Tunnel[]; tunnels_total: number } }
  | {
      readonly event: 'sample';
      readonly data: { t: number; points: Array<{ identity: string; point: RatePoint }> };
    }
  | { readonly event: 'limits'; readonly data: Array<{ identity: string; limits: IdentityLimit[] }> }
  | { readonly event: 'gateway'; readonly data: GatewayState }
  | { readonly event: 'dropped'; readonly data: { dropped: number } }
  | { readonly event: 'connection'; readonly data: { open: boolean } };

/**
 * The page's state as a pure function of the stream: the first `state` message replaces everything
 * (history arrives after it as `record`s), later messages add to it. Lists are bounded, newest first.
 */
export function reduce(state: DashboardState, message: StreamMessage): DashboardState {
  switch (message.event) {
    case 'state': {
      const d = message.data;
      return {
        ...initialState,
        connected: true,
        gateways: (d['gateways'] as GatewayState[]) ?? [],
        tunnels: (d['tunnels'] as Tunnel[]) ?? [],
        tunnelsTotal: Number(d['tunnels_total'] ?? 0),
        bandwidth: (d['bandwidth'] as IdentitySeries[]) ?? [],
        // The audit ring is kept apart on the server so decisions never push it out.
        audit: [...((d['audit'] as OperatorAction[]) ?? [])].reverse(),
        dropped: state.dropped,
      };
    }
    case 'record':
      return addRecord(state, message.data);
    case 'tunnels':
      return { ...state, tunnels: message.data.tunnels, tunnelsTotal: message.data.tunnels_total };
    case 'sample':
      return { ...state, bandwidth: addPoints(state.bandwidth, message.data.points) };
    case 'limits': {
      const byIdentity = new Map(message.data.map((l) => [l.identity, l.limits]));
      return {
        ...state,
        bandwidth: state.bandwidth.map((s) => ({ ...s, limits: byIdentity.get(s.identity) ?? s.limits })),
      };
    }
    case 'gateway': {
      const others = state.gateways.filter((g) => g.gateway !== message.data.gateway);
      return {
        ...state,
        gateways: [...others, message.data].sort((a, b) => a.gateway.localeCompare(b.gateway)),
      };
    }
    case 'dropped':
      return { ...state, dropped: state.dropped + message.data.dropped };
    case 'connection':
      return { ...state, connected: message.data.open };
  }
}

function addRecord(state: DashboardState, record: FeedRecord): DashboardState {
  switch (record.type) {
    case 'decision':
      return { ...state, decisions: [record, ...state.decisions].slice(0, MAX_DECISIONS) };
    case 'tunnel_closed':
      return { ...state, closes: [record, ...state.closes].slice(0, MAX_CLOSES) };
    case 'operator_action':
      // History replays the audit records that `state` already carried: keep one of each.
      if (
        state.audit.some(
          (a) => a.time === record.time && a.action === record.action && a.gateway === record.gateway,
        )
      ) {
        return state;
      }
      return { ...state, audit: [record, ...state.audit].slice(0, MAX_DECISIONS) };
    default:
      return state;
  }
}

function addPoints(
  series: readonly IdentitySeries[],
  points: ReadonlyArray<{ identity: string; point: RatePoint }>,
): IdentitySeries[] {
  const out = new Map(series.map((s) => [s.identity, s]));
  for (const { identity, point } of points) {
    const s = out.get(identity) ?? { identity, points: [], limits: [] };
    out.set(identity, { ...s, points: [...s.points, point].slice(-MAX_POINTS) });
  }
  return [...out.values()];
}
