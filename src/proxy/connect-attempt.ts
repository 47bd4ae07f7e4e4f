import type { ConnectAttempt } from '../session/events.js';
import type { TunnelProtocol } from '../session/tunnel-session.js';
import type { TraceContext } from '../tracecontext/traceparent.js';
import type { ConnectionInfo } from './connection-info.js';

/** The typed record of one CONNECT, started when its request (or stream) arrives. */
export function newAttempt(
  info: ConnectionInfo,
  protocol: TunnelProtocol,
  rawAuthority: string,
  trace: TraceContext | undefined,
): ConnectAttempt {
  return {
    protocol,
    peerAddr: info.peerAddr,
    identity: info.identity,
    claimedIdentity: info.claimedIdentity,
    spki: info.spki,
    spkiFingerprint: info.spkiFingerprint,
    rawAuthority,
    trace,
    startedAt: performance.now(),
    destination: undefined,
    grant: undefined,
    policy: undefined,
    dns: undefined,
    dial: undefined,
  };
}
