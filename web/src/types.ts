/**
 * The shapes the dashboard's API sends, imported from the server's own definitions (type-only: nothing of
 * src/ reaches the bundle), so the page and the server cannot disagree about a field.
 */
import type {
  IdentityLimit,
  IdentitySeries,
  RatePoint,
  SampledTunnel,
} from '../../src/dashboard/bandwidth.ts';
import type { LinkState } from '../../src/dashboard/gateway-link.ts';
import type { RegistryView } from '../../src/dashboard/registry-view.ts';
import type {
  DecisionRecord,
  LiveCheckRecord,
  OperatorActionRecord,
  RegistryStatusRecord,
  TunnelClosedRecord,
} from '../../src/eventfeed/records.ts';

/** Every record names where it came from: a gateway, `otlp:<source>`, or `dashboard`. */
type FromGateway<T> = T & { readonly gateway: string };

export type Decision = FromGateway<DecisionRecord>;
export type TunnelClosed = FromGateway<TunnelClosedRecord>;
export type OperatorAction = FromGateway<OperatorActionRecord>;
export type FeedRecord =
  | Decision
  | TunnelClosed
  | OperatorAction
  | FromGateway<RegistryStatusRecord | LiveCheckRecord>;
export type GatewayState = LinkState;
export type Tunnel = SampledTunnel;
export type { IdentityLimit, IdentitySeries, RatePoint, RegistryView };

/** `GET /api/session` (src/dashboard/auth-routes.ts). */
export interface Session {
  readonly role: 'read' | 'admin';
  readonly name: string;
  readonly csrf: string | null;
}
