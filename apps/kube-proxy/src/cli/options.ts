// From argv to the running configuration, with upstream's precedence: without --config, flags set
// the configuration over the defaults; with --config, the file is the configuration and only the
// flags marked `withConfig` (logging, --hostname-override, --master, ...) still apply.

import { readFileSync } from 'node:fs';
import type { ProxyConfig } from '@kube-proxy-ts/core';
import { ConfigError, invalid } from '../config/field-error.js';
import { appendPortIfNeeded, splitHostPort } from '../config/net.js';
import { applyModeSyncPeriods, contentTypeWarning, decodeKubeProxyConfiguration, defaultKubeProxyConfig, modeSection } from '../config/v1alpha1.js';
import { validateProxyConfig } from '../config/validate.js';
import { FLAGS, FlagError, parseFlags, type FlagValue } from './flags.js';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Options {
  readonly config: ProxyConfig;
  readonly configFile: string | undefined;
  readonly writeConfigTo: string | undefined;
  readonly cleanup: boolean;
  readonly initOnly: boolean;
  /** "true" or "raw" when --version was given. */
  readonly version: string | undefined;
  readonly help: boolean;
  readonly master: string | undefined;
  readonly manifests: string | undefined;
  /** --log-level, when given; otherwise the level follows -v. */
  readonly logLevel: LogLevel | undefined;
  /** Things to log once the logger exists (deprecated flags, ignored flags, lenient decoding). */
  readonly warnings: readonly string[];
}

export interface ResolveDeps {
  readonly readFile?: (path: string) => string;
}

/** Throws FlagError or ConfigError (both with messages meant for the user). */
export function resolveOptions(argv: readonly string[], deps: ResolveDeps = {}): Options {
  const readFile = deps.readFile ?? ((p: string) => readFileSync(p, 'utf8'));
  const { values, warnings: flagWarnings } = parseFlags(argv);
  const warnings = [...flagWarnings];
  const get = <T extends FlagValue>(name: string): T | undefined => values.get(name) as T | undefined;

  const base = {
    configFile: get<string>('config') || undefined,
    writeConfigTo: get<string>('write-config-to') || undefined,
    cleanup: get<boolean>('cleanup') ?? false,
    initOnly: get<boolean>('init-only') ?? false,
    version: get<string>('version'),
    help: get<boolean>('help') ?? false,
    master: get<string>('master') || undefined,
    manifests: get<string>('manifests') || undefined,
  };
  if (base.help || base.version !== undefined) {
    return { ...base, config: defaultKubeProxyConfig(), logLevel: undefined, warnings };
  }

  let config: ProxyConfig;
  if (base.configFile) {
    let text: string;
    try {
      text = readFile(base.configFile);
    } catch (e) {
      throw new ConfigError([invalid('--config', base.configFile, `cannot read the file: ${(e as Error).message}`)], 'flags');
    }
    const decoded = decodeKubeProxyConfiguration(text, base.configFile);
    config = decoded.config;
    warnings.push(...decoded.warnings.map((w) => `${base.configFile}: ${w}`));
    for (const spec of FLAGS) {
      if (!values.has(spec.name)) continue;
      if (spec.withConfig) spec.apply?.(config, values.get(spec.name) as never);
      else if (!spec.deprecated) warnings.push(`flag --${spec.name} is ignored because a config file is specified by --config`);
    }
  } else {
    config = defaultKubeProxyConfig();
    for (const spec of FLAGS) {
      if (values.has(spec.name)) spec.apply?.(config, values.get(spec.name) as never);
    }
    const contentType = get<string>('kube-api-content-type');
    const ctWarning = contentType === undefined ? undefined : contentTypeWarning(contentType);
    if (ctWarning) warnings.push(ctWarning);
    applySyncPeriodFlags(config, values);
    const healthzPort = get<number>('healthz-port');
    const metricsPort = get<number>('metrics-port');
    if (healthzPort !== undefined) config.healthzBindAddress = addressFromDeprecatedFlag(config.healthzBindAddress, healthzPort);
    if (metricsPort !== undefined) config.metricsBindAddress = addressFromDeprecatedFlag(config.metricsBindAddress, metricsPort);
  }

  const hostname = get<string>('hostname-override');
  if (hostname !== undefined) {
    if (hostname.trim() === '') throw new FlagError('empty hostname-override is invalid');
    config.hostnameOverride = hostname.trim().toLowerCase();
  }

  const errors = validateProxyConfig(config);
  if (errors.length > 0) throw new ConfigError(errors, base.configFile ?? 'flags');

  const level = get<string>('log-level');
  if (level !== undefined && !(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new FlagError(`invalid argument ${JSON.stringify(level)} for "--log-level" flag: must be one of ${LOG_LEVELS.join(', ')}`);
  }
  const noEffect = ['vmodule', 'profiling', 'show-hidden-metrics-for-version', 'allow-metric-labels', 'allow-metric-labels-manifest', 'disabled-metrics', 'log-json-split-stream', 'log-json-info-buffer-size', 'log-text-split-stream', 'log-text-info-buffer-size'];
  for (const name of noEffect) {
    if (values.has(name)) warnings.push(`flag --${name} is accepted for compatibility but has no effect`);
  }
  return { ...base, config, logLevel: level as LogLevel | undefined, warnings };
}

// --iptables-* apply to every mode but ipvs, --ipvs-* only to ipvs, as upstream.
function applySyncPeriodFlags(c: ProxyConfig, values: ReadonlyMap<string, FlagValue>): void {
  const section = c[modeSection(c.mode)];
  const prefix = c.mode === 'ipvs' ? 'ipvs' : 'iptables';
  const period = values.get(`${prefix}-sync-period`);
  const min = values.get(`${prefix}-min-sync-period`);
  if (typeof period === 'number') section.syncPeriod = period;
  if (typeof min === 'number') section.minSyncPeriod = min;
  applyModeSyncPeriods(c);
}

// The deprecated --healthz-port / --metrics-port: 0 disables the server, another value replaces
// the port of the address.
function addressFromDeprecatedFlag(addr: string, port: number): string {
  if (port === 0) return '';
  const hp = splitHostPort(addr);
  return appendPortIfNeeded(hp ? hp.host : addr, port);
}
