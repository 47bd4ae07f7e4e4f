import type {
  ConnectRejected,
  GatewaySubscriber,
  LiveCheckStatus,
  OperatorAction,
  RegistryStatus,
  TunnelClosed,
  TunnelOpened,
} from '../session/events.js';
import type { TunnelSession } from '../session/tunnel-session.js';

/**
 * The gateway's events as the operators' feed carries them (`GET /v1/events`, the dashboard): plain JSON
 * records with the log's field names, one per decision and per change an operator watches. A decision is
 * published the moment it is made: `tunnelOpened` is the allow, `connectRejected` the refusal, so a
 * decision never waits for its tunnel to end.
 */
export type FeedRecord =
  | DecisionRecord
  | TunnelClosedRecord
  | OperatorActionRecord
  | RegistryStatusRecord
  | LiveCheckRecord;

interface RecordBase {
  /** Wall-clock time of the event, ISO-8601. */
  readonly time: string;
}

/** `allowed`: a tunnel was opened; `denied`: refused (policy, egress, caps, bad requests); `failed`: allowed but not reachable. */
export type DecisionResult = 'allowed' | 'denied' | 'failed';

export interface DecisionRecord extends RecordBase {
  readonly type: 'decision';
  readonly result: DecisionResult;
  /** The status the client was answered. */
  readonly status: number;
  readonly source_identity: string | null;
  /** Normalized; null when the authority could not be parsed (a 400). */
  readonly dest_authority: string | null;
  /** The deny reason (DENY_REASONS) or the kind of refusal (`too_many_tunnels`, `bad_request`, …). */
  readonly reason: string | null;
  readonly detail: string | null;
  readonly protocol: string;
  readonly source_peer_addr: string;
  readonly tunnel_id: string | null;
  readonly permission_id: string | null;
  readonly signing_key_id: string | null;
}

export interface TunnelClosedRecord extends RecordBase {
  readonly type: 'tunnel_closed';
  readonly tunnel_id: string;
  readonly source_identity: string;
  readonly dest_authority: string;
  readonly protocol: string;
  readonly permission_id: string;
  readonly signing_key_id: string;
  readonly close_cause: string;
  readonly close_reason: string | null;
  readonly bytes_client_to_dest: number;
  readonly bytes_dest_to_client: number;
  readonly duration_ms: number;
}

export interface OperatorActionRecord extends RecordBase {
  readonly type: 'operator_action';
  readonly action: string;
  readonly operator_role: string;
  readonly operator_addr: string;
  readonly operator_name: string | null;
  readonly target: Readonly<Record<string, string>>;
  readonly result: Readonly<Record<string, string | number>>;
}

export interface RegistryStatusRecord extends RecordBase {
  readonly type: 'registry_status';
  readonly available: boolean;
  readonly error: string | null;
}

export interface LiveCheckRecord extends RecordBase {
  readonly type: 'live_check';
  readonly healthy: boolean;
  readonly mode: string;
  readonly detail: string | null;
}

/** Attacker-controlled text (authorities, identities, parser complaints) is cut before it is kept. */
const MAX_TEXT = 256;

function cut(text: string | undefined | null): string | null {
  if (text === undefined || text === null) return null;
  return text.length > MAX_TEXT ? `${text.slice(0, MAX_TEXT)}…` : text;
}

/** A subscriber that turns each watched event into a record and hands it to `publish`. */
export function feedSubscriber(
  publish: (record: FeedRecord) => void,
  now: () => number = Date.now,
): GatewaySubscriber {
  const time = () => new Date(now()).toISOString();
  return {
    tunnelOpened: (e) => publish(allowRecord(e, time())),
    connectRejected: (e) => publish(rejectRecord(e, time())),
    tunnelClosed: (e) => publish(closedRecord(e, time())),
    operatorAction: (e) => publish(actionRecord(e, time())),
    registryStatus: (e) => publish(registryRecord(e, time())),
    liveCheckStatus: (e) => publish(liveCheckRecord(e, time())),
  };
}

export function allowRecord(e: TunnelOpened, time: string): DecisionRecord {
  const s = e.session;
  return {
    type: 'decision',
    time,
    result: 'allowed',
    status: 200,
    source_identity: cut(s.identity),
    dest_authority: s.destination.authority,
    reason: null,
    detail: null,
    protocol: s.protocol,
    source_peer_addr: s.peerAddr,
    tunnel_id: s.id,
    permission_id: s.grant.permissionId,
    signing_key_id: s.grant.signingKeyId,
  };
}

export function rejectRecord(e: ConnectRejected, time: string): DecisionRecord {
  const a = e.attempt;
  const failed = e.reason.kind === 'upstream_failed' || e.reason.kind === 'internal_error';
  return {
    type: 'decision',
    time,
    result: failed ? 'failed' : 'denied',
    status: e.status,
    source_identity: cut(a.identity),
    dest_authority: a.destination?.authority ?? null,
    reason: e.reason.kind === 'denied' ? e.reason.denyReason : e.reason.kind,
    detail: cut(e.detail),
    protocol: a.protocol,
    source_peer_addr: a.peerAddr,
    tunnel_id: null,
    permission_id: a.grant?.permissionId ?? null,
    signing_key_id: a.grant?.signingKeyId ?? null,
  };
}

export function closedRecord(e: TunnelClosed, time: string): TunnelClosedRecord {
  const s: TunnelSession = e.session;
  return {
    type: 'tunnel_closed',
    time,
    tunnel_id: s.id,
    source_identity: cut(s.identity) ?? '',
    dest_authority: s.destination.authority,
    protocol: s.protocol,
    permission_id: s.grant.permissionId,
    signing_key_id: s.grant.signingKeyId,
    close_cause: e.cause,
    close_reason: cut(e.reason),
    bytes_client_to_dest: e.bytesClientToDest,
    bytes_dest_to_client: e.bytesDestToClient,
    duration_ms: e.durationMs,
  };
}

function actionRecord(e: OperatorAction, time: string): OperatorActionRecord {
  return {
    type: 'operator_action',
    time,
    action: e.action,
    operator_role: e.role,
    operator_addr: e.peer,
    operator_name: e.operator ?? null,
    target: e.target,
    result: e.result,
  };
}

function registryRecord(e: RegistryStatus, time: string): RegistryStatusRecord {
  return { type: 'registry_status', time, available: e.available, error: cut(e.error) };
}

function liveCheckRecord(e: LiveCheckStatus, time: string): LiveCheckRecord {
  return { type: 'live_check', time, healthy: e.healthy, mode: e.mode, detail: cut(e.detail) };
}
