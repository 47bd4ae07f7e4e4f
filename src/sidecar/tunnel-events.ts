import { EventSeam, type Subscriber } from '../session/event-seam.js';
import type { TunnelTrace } from './trace.js';

/**
 * The sidecar's publish seam for its tunnels (the same EventSeam as the gateway's): metrics and spans
 * subscribe. Times are monotonic milliseconds (performance.now()).
 */

/** The gateway answered a tunnel request, or could not be asked (then the sidecar answered itself). */
export interface TunnelAnswered {
  readonly trace: TunnelTrace;
  readonly authority: string;
  /** `connect`: a CONNECT tunnel; `http`: an absolute-form http:// request carried through one. */
  readonly kind: 'connect' | 'http';
  readonly identity: string | null;
  readonly startedAt: number;
  /** The status the local client gets (200, the gateway's refusal, or the sidecar's own 502/504). */
  readonly status: number;
  /** `gateway`: the gateway answered; `sidecar`: it could not be reached or did not answer in time. */
  readonly answeredBy: 'gateway' | 'sidecar';
}

export interface TunnelEnded {
  readonly trace: TunnelTrace;
  readonly openedAt: number;
  readonly bytesClientToDest: number;
  readonly bytesDestToClient: number;
  readonly cause: string;
}

/** A local request refused before any tunnel was asked for (407 proxy credential, 400 bad request). */
export interface LocalRefusal {
  readonly status: number;
}

export interface SidecarEventMap {
  tunnelAnswered: TunnelAnswered;
  tunnelEnded: TunnelEnded;
  localRefusal: LocalRefusal;
}

export type SidecarSubscriber = Subscriber<SidecarEventMap>;

export class SidecarEvents extends EventSeam<SidecarEventMap> {}
