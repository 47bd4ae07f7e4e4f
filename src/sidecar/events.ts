/**
 * The names in the sidecar's log lines (`msg`). Kept apart from the gateway's events.ts so that both
 * can change without stepping on each other; field names shared with the gateway (source_identity,
 * dest_authority, bytes_*) are spelled the same so one log query covers both ends of a tunnel.
 */
export const SidecarEvent = {
  listening: 'listening',
  identityMissing: 'agent certificate has no identity extension',
  keyRevealable: 'agent key may leave its token',
  nonLoopbackListen: 'listening on a non-loopback address',
  gatewayConnected: 'gateway connected',
  gatewayConnectFailed: 'gateway connect failed',
  gatewayDisconnected: 'gateway disconnected',
  keepaliveTimeout: 'gateway keepalive timeout',
  connectRetried: 'CONNECT retried on a fresh gateway connection',
  tunnelOpened: 'tunnel opened',
  tunnelRefused: 'tunnel refused',
  /** The local client left before its tunnel was established; its CONNECT was cancelled at the gateway. */
  tunnelAbandoned: 'tunnel abandoned',
  tunnelClosed: 'tunnel closed',
  proxyAuthRequired: 'proxy authentication required',
  badRequest: 'bad request',
  httpForwardFailed: 'HTTP forward failed',
  signalReceived: 'signal received',
  /** SIGUSR1/SIGUSR2: the sidecar does not act on them (SIGUSR1 never opens the inspector). */
  signalIgnored: 'signal ignored',
  /** SIGHUP: the CA, agent certificate and key were read again and are presented from now on. */
  credentialsReloaded: 'credentials reloaded',
  /** SIGHUP: the new files are unusable; the sidecar keeps presenting the credentials it had. */
  credentialsReloadFailed: 'credentials reload failed',
  shutdownStarted: 'shutdown started',
  shutdownComplete: 'shutdown complete',
  startupFailed: 'startup failed',
  /** The sidecar's /metrics and /healthz listener is up. */
  adminListening: 'admin listening',
  traceExportEnabled: 'trace export enabled',
  traceExportFailing: 'trace export failing',
  traceExportRecovered: 'trace export recovered',
  traceSettingIgnored: 'trace setting ignored',
  /** A subscriber of the sidecar's tunnel events (metrics, spans) failed; the tunnel is unaffected. */
  internalError: 'internal error',
} as const;

export type SidecarEventName = (typeof SidecarEvent)[keyof typeof SidecarEvent];
