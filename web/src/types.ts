/** The shapes the dashboard's API sends (src/dashboard/, src/eventfeed/records.ts). */

export interface Decision {
  readonly type: 'decision';
  readonly gateway: string;
  readonly time: string;
  readonly result: 'allowed' | 'denied' | 'failed';
  readonly status: number;
  readonly source_identity: string | null;
  readonly dest_authority: string | null;
  readonly reason: string | null;
  readonly detail: string | null;
  readonly protocol: string;
  readonly tunnel_id: string | null;
  readonly permission_id: string | null;
  readonly signing_key_id: string | null;
}

export interface TunnelClosed {
  readonly type: 'tunnel_closed';
  readonly gateway: string;
  readonly time: string;
  readonly tunnel_id: string;
  readonly source_identity: string;
  readonly dest_authority: string;
  readonly close_cause: string;
  readonly close_reason: string | null;
  readonly bytes_client_to_dest: number;
  readonly bytes_dest_to_client: number;
}

export interface OperatorAction {
  readonly type: 'operator_action';
  readonly gateway: string;
  readonly time: string;
  readonly action: string;
  readonly operator_role: string;
  readonly operator_addr: string;
  readonly operator_name: string | null;
  readonly target: Readonly<Record<string, string>>;
  readonly result: Readonly<Record<string, string | number>>;
}

export interface StatusRecord {
  readonly type: 'registry_status' | 'live_check';
  readonly gateway: string;
  readonly time: string;
  readonly available?: boolean;
  readonly healthy?: boolean;
  readonly mode?: string;
  readonly error?: string | null;
  readonly detail?: string | null;
}

export type FeedRecord = Decision | TunnelClosed | OperatorAction | StatusRecord;

export interface GatewayState {
  readonly gateway: string;
  readonly connected: boolean;
  readonly detail: string;
  readonly ready: boolean | undefined;
  readonly checks: ReadonlyArray<{ name: string; ok: boolean; detail: string }>;
}

export interface Tunnel {
  readonly gateway: string;
  readonly tunnel_id: string;
  readonly source_identity: string;
  readonly dest_authority: string;
  readonly protocol: string;
  readonly permission_id: string;
  readonly signing_key_id: string;
  readonly age_ms: number;
  readonly bytes_client_to_dest: number;
  readonly bytes_dest_to_client: number;
  readonly up_bytes_per_second: number;
  readonly down_bytes_per_second: number;
  readonly throttled: boolean;
}

export interface RatePoint {
  readonly t: number;
  readonly up: number;
  readonly down: number;
}

export interface IdentityLimit {
  readonly gateway: string;
  readonly upBytesPerSecond: number;
  readonly downBytesPerSecond: number;
  readonly quota: {
    readonly limitBytes: number;
    readonly usedBytes: number;
    readonly windowS: number;
  } | null;
}

export interface IdentitySeries {
  readonly identity: string;
  readonly points: readonly RatePoint[];
  readonly limits: readonly IdentityLimit[];
}

export interface Session {
  readonly role: 'read' | 'admin';
  readonly name: string;
  readonly csrf: string | null;
}

export interface RegistryView {
  readonly extension_version: number;
  readonly principals: ReadonlyArray<{
    key_id: string;
    status: string;
    spki_sha256: string;
    not_before: string;
    not_after: string;
    revoked_at: string | null;
  }>;
  readonly scopes: ReadonlyArray<{
    id: string;
    signing_key_id: string;
    destination: string;
    status: string;
    not_after: string;
  }>;
  readonly permissions: ReadonlyArray<{
    permission_id: string;
    status: string;
    identity: string;
    spki_sha256: string | null;
    destination: string;
    signing_key_id: string;
    not_before: string | null;
    not_after: string | null;
    revoked_at: string | null;
    detail: string | null;
  }>;
  readonly permissions_total: number;
  readonly agents: ReadonlyArray<{ identity: string; spki_sha256: string | null; permissions: string[] }>;
}
