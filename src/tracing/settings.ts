import { OTLP_PROTOCOLS, type OtlpProtocol } from '../config/schema.js';

/**
 * Where and how spans are exported, resolved once from the config file and the standard `OTEL_*`
 * environment variables (https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/).
 * Pure: the caller passes the environment in (only gateway/ and cli/ read it). The file wins over the
 * environment for the keys it has, as the OpenTelemetry specification ranks code over environment.
 */

export const SAMPLERS = [
  'always_on',
  'always_off',
  'traceidratio',
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
] as const;
export type SamplerName = (typeof SAMPLERS)[number];

export interface BatchSettings {
  /** Spans waiting for export at most; more are dropped (and counted). */
  readonly maxQueueSize: number;
  readonly maxExportBatchSize: number;
  readonly scheduledDelayMillis: number;
  readonly exportTimeoutMillis: number;
}

export interface TracingSettings {
  /** The exporter's URL: for gRPC the collector's `http(s)://host:4317`; for HTTP the full `/v1/traces` URL. */
  readonly url: string;
  readonly protocol: OtlpProtocol;
  /** service.name unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES says otherwise. */
  readonly serviceName: string;
  readonly batch: BatchSettings;
  readonly sampler: SamplerName;
  /** For the `traceidratio` samplers, in [0, 1]. */
  readonly samplerRatio: number;
}

export interface TracingInput {
  /** `observability.otlp_endpoint` (or the sidecar's): absent means "from the environment, if at all". */
  readonly endpoint: string | undefined;
  readonly protocol: OtlpProtocol | undefined;
  readonly serviceName: string;
}

export interface ResolvedTracing {
  /** Undefined: no endpoint anywhere, or OTEL_SDK_DISABLED / OTEL_TRACES_EXPORTER=none: tracing is off. */
  readonly settings: TracingSettings | undefined;
  /** Environment values that were ignored, for the log. */
  readonly warnings: readonly string[];
}

/** The batch span processor's defaults (the OpenTelemetry specification's). */
export const DEFAULT_BATCH: BatchSettings = {
  maxQueueSize: 2048,
  maxExportBatchSize: 512,
  scheduledDelayMillis: 5000,
  exportTimeoutMillis: 30_000,
};

type Env = Readonly<Record<string, string | undefined>>;

export function resolveTracing(input: TracingInput, env: Env): ResolvedTracing {
  const warnings: string[] = [];
  const value = (name: string): string | undefined => {
    const v = env[name]?.trim();
    return v === undefined || v === '' ? undefined : v;
  };
  if (value('OTEL_SDK_DISABLED')?.toLowerCase() === 'true') return { settings: undefined, warnings };
  const exporters = value('OTEL_TRACES_EXPORTER')?.toLowerCase();
  if (exporters === 'none') return { settings: undefined, warnings };
  if (exporters !== undefined && !exporters.split(',').some((e) => e.trim() === 'otlp')) {
    warnings.push(`OTEL_TRACES_EXPORTER=${exporters}: only otlp is supported; exporting OTLP`);
  }

  const protocol =
    input.protocol ??
    protocolFrom('OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', value, warnings) ??
    protocolFrom('OTEL_EXPORTER_OTLP_PROTOCOL', value, warnings) ??
    'grpc';
  // A signal-specific URL is used as given; a base URL gets the signal's path for HTTP (the spec's rule).
  const signalUrl = input.endpoint === undefined ? value('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT') : undefined;
  const base = input.endpoint ?? (signalUrl === undefined ? value('OTEL_EXPORTER_OTLP_ENDPOINT') : undefined);
  if (signalUrl === undefined && base === undefined) return { settings: undefined, warnings };
  let url: string;
  try {
    url = signalUrl ?? tracesUrl(base!, protocol);
    new URL(url);
  } catch {
    warnings.push(
      `the OTLP endpoint ${JSON.stringify(signalUrl ?? base)} is not a URL; spans are not exported`,
    );
    return { settings: undefined, warnings };
  }

  const batch: BatchSettings = {
    maxQueueSize: positive('OTEL_BSP_MAX_QUEUE_SIZE', DEFAULT_BATCH.maxQueueSize, value, warnings),
    maxExportBatchSize: positive(
      'OTEL_BSP_MAX_EXPORT_BATCH_SIZE',
      DEFAULT_BATCH.maxExportBatchSize,
      value,
      warnings,
    ),
    scheduledDelayMillis: positive(
      'OTEL_BSP_SCHEDULE_DELAY',
      DEFAULT_BATCH.scheduledDelayMillis,
      value,
      warnings,
    ),
    exportTimeoutMillis: positive(
      'OTEL_BSP_EXPORT_TIMEOUT',
      DEFAULT_BATCH.exportTimeoutMillis,
      value,
      warnings,
    ),
  };
  const samplerText = value('OTEL_TRACES_SAMPLER')?.toLowerCase();
  let sampler: SamplerName = 'parentbased_always_on';
  if (samplerText !== undefined) {
    if ((SAMPLERS as readonly string[]).includes(samplerText)) sampler = samplerText as SamplerName;
    else
      warnings.push(
        `OTEL_TRACES_SAMPLER=${samplerText} is not one of ${SAMPLERS.join(', ')}; using ${sampler}`,
      );
  }
  let samplerRatio = 1;
  const ratioText = value('OTEL_TRACES_SAMPLER_ARG');
  if (ratioText !== undefined && sampler.endsWith('traceidratio')) {
    const ratio = Number(ratioText);
    if (Number.isFinite(ratio) && ratio >= 0 && ratio <= 1) samplerRatio = ratio;
    else warnings.push(`OTEL_TRACES_SAMPLER_ARG=${ratioText} is not a ratio in [0, 1]; using 1`);
  }
  return {
    settings: { url, protocol, serviceName: input.serviceName, batch, sampler, samplerRatio },
    warnings,
  };
}

/**
 * The URL the exporter posts to. gRPC: the collector's address as given (the path is not used). HTTP: a
 * base URL (no path, or `/`) gets `v1/traces`, as OTEL_EXPORTER_OTLP_ENDPOINT does; a URL with a path is
 * taken to be the full traces URL already.
 */
export function tracesUrl(endpoint: string, protocol: OtlpProtocol): string {
  if (protocol === 'grpc') return endpoint;
  const url = new URL(endpoint);
  if (url.pathname === '' || url.pathname === '/') url.pathname = '/v1/traces';
  return url.toString();
}

function protocolFrom(
  name: string,
  value: (name: string) => string | undefined,
  warnings: string[],
): OtlpProtocol | undefined {
  const text = value(name);
  if (text === undefined) return undefined;
  if ((OTLP_PROTOCOLS as readonly string[]).includes(text)) return text as OtlpProtocol;
  warnings.push(`${name}=${text} is not one of ${OTLP_PROTOCOLS.join(', ')}; ignored`);
  return undefined;
}

function positive(
  name: string,
  fallback: number,
  value: (name: string) => string | undefined,
  warnings: string[],
): number {
  const text = value(name);
  if (text === undefined) return fallback;
  const n = Number(text);
  if (Number.isInteger(n) && n > 0) return n;
  warnings.push(`${name}=${text} is not a positive whole number; using ${fallback}`);
  return fallback;
}
