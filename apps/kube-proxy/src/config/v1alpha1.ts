// KubeProxyConfiguration v1alpha1 (kubeproxy.config.k8s.io): decoding a YAML or JSON document into
// the defaulted ProxyConfig, and encoding a ProxyConfig back for --write-config-to and /configz.
// Decoding is strict first (unknown or duplicate fields); when only strictness fails, the document is
// used anyway and a warning says why, as upstream's lenient fallback does.

import { isMap, isScalar, parseDocument, stringify, type Node as YamlNode } from 'yaml';
import { defaultProxyConfig, ipFamilyOf, type LocalMode, type ProxyConfig } from '@kube-proxy-ts/core';
import { formatDuration, parseDuration } from './duration.js';
import { ConfigError, invalid, type FieldError } from './field-error.js';
import { appendPortIfNeeded } from './net.js';

export const GROUP = 'kubeproxy.config.k8s.io';
export const API_VERSION = `${GROUP}/v1alpha1`;
export const KIND = 'KubeProxyConfiguration';

const HEALTHZ_PORT = 10256;
const METRICS_PORT = 10249;

type Scalar = 'string' | 'bool' | 'int' | 'number' | 'duration' | 'stringList' | 'boolMap' | 'any';
interface Shape {
  readonly [field: string]: Scalar | Shape;
}

// Every field v1alpha1 has had in recent releases (udpIdleTimeout is the userspace mode's).
const SCHEMA: Shape = {
  apiVersion: 'string',
  kind: 'string',
  bindAddress: 'string',
  bindAddressHardFail: 'bool',
  clientConnection: { kubeconfig: 'string', acceptContentTypes: 'string', contentType: 'string', qps: 'number', burst: 'int' },
  clusterCIDR: 'string',
  configSyncPeriod: 'duration',
  conntrack: {
    maxPerCore: 'int',
    min: 'int',
    tcpEstablishedTimeout: 'duration',
    tcpCloseWaitTimeout: 'duration',
    tcpBeLiberal: 'bool',
    udpTimeout: 'duration',
    udpStreamTimeout: 'duration',
  },
  detectLocal: { bridgeInterface: 'string', interfaceNamePrefix: 'string' },
  detectLocalMode: 'string',
  enableProfiling: 'bool',
  featureGates: 'boolMap',
  healthzBindAddress: 'string',
  hostnameOverride: 'string',
  iptables: { masqueradeAll: 'bool', masqueradeBit: 'int', localhostNodePorts: 'bool', syncPeriod: 'duration', minSyncPeriod: 'duration' },
  ipvs: {
    syncPeriod: 'duration',
    minSyncPeriod: 'duration',
    scheduler: 'string',
    excludeCIDRs: 'stringList',
    strictARP: 'bool',
    tcpTimeout: 'duration',
    tcpFinTimeout: 'duration',
    udpTimeout: 'duration',
  },
  nftables: { masqueradeAll: 'bool', masqueradeBit: 'int', syncPeriod: 'duration', minSyncPeriod: 'duration' },
  logging: { format: 'string', flushFrequency: 'any', verbosity: 'int', vmodule: 'any', options: 'any' },
  metricsBindAddress: 'string',
  mode: 'string',
  nodePortAddresses: 'stringList',
  oomScoreAdj: 'int',
  portRange: 'string',
  showHiddenMetricsForVersion: 'string',
  udpIdleTimeout: 'duration',
  winkernel: 'any',
  windowsRunAsService: 'bool',
};

type Doc = Record<string, unknown>;

export interface DecodeResult {
  readonly config: ProxyConfig;
  /** Strict-decoding problems that were tolerated (unknown or duplicate fields). */
  readonly warnings: readonly string[];
}

/**
 * Decodes a KubeProxyConfiguration document (YAML or JSON) and applies upstream's defaults.
 * Throws ConfigError naming each bad field and value; does not validate ranges (see validate.ts).
 */
export function decodeKubeProxyConfiguration(text: string, source = 'config file'): DecodeResult {
  const warnings: string[] = [];
  let parsed = parseDocument(text, { uniqueKeys: true, prettyErrors: false });
  if (parsed.errors.some((e) => e.code === 'DUPLICATE_KEY')) {
    parsed = parseDocument(text, { uniqueKeys: false, prettyErrors: false });
    const dups = duplicateKeys(parsed.contents, '');
    warnings.push(`strict decoding failed, using lenient decoding: ${dups.map((k) => `duplicate field "${k}"`).join(', ')} (the last value is used)`);
  }
  if (parsed.errors.length > 0) {
    const first = parsed.errors[0];
    throw new ConfigError([invalid('<document>', source, `not valid YAML or JSON: ${first?.message.split('\n')[0]}`)], source);
  }
  const doc: unknown = parsed.toJS();
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new ConfigError([invalid('<document>', doc ?? null, `must be a ${KIND} object`)], source);
  }
  const d = doc as Doc;
  const errors: FieldError[] = [];
  if (d.kind === undefined || d.kind === null || d.kind === '') errors.push(invalid('kind', d.kind ?? '', `Object 'Kind' is missing; must be ${KIND}`));
  else if (d.kind !== KIND) errors.push(invalid('kind', d.kind, `must be ${KIND}`));
  if (d.apiVersion !== API_VERSION) errors.push(invalid('apiVersion', d.apiVersion ?? '', `must be ${API_VERSION}`));
  const unknown: string[] = [];
  checkShape(d, SCHEMA, '', errors, unknown);
  if (errors.length > 0) throw new ConfigError(errors, source);
  if (unknown.length > 0) {
    warnings.push(`strict decoding failed, using lenient decoding: ${unknown.map((f) => `unknown field "${f}"`).join(', ')}`);
  }
  // Only a content type the file asks for is worth a warning, not the protobuf default.
  const contentType = section(d, 'clientConnection').contentType;
  const ctWarning = typeof contentType === 'string' ? contentTypeWarning(contentType) : undefined;
  if (ctWarning) warnings.push(ctWarning);
  return { config: toProxyConfig(d), warnings };
}

function duplicateKeys(node: YamlNode | null, prefix: string): string[] {
  if (!isMap(node)) return [];
  const seen = new Set<string>();
  const out: string[] = [];
  for (const item of node.items) {
    const key = isScalar(item.key) ? String(item.key.value) : String(item.key);
    const path = prefix ? `${prefix}.${key}` : key;
    if (seen.has(key) && !out.includes(path)) out.push(path);
    seen.add(key);
    out.push(...duplicateKeys(item.value as YamlNode | null, path));
  }
  return out;
}

function checkShape(obj: Doc, shape: Shape, prefix: string, errors: FieldError[], unknown: string[]): void {
  for (const [key, value] of Object.entries(obj)) {
    const path = prefix ? `${prefix}.${key}` : key;
    const kind = shape[key];
    if (kind === undefined) {
      unknown.push(path);
      continue;
    }
    if (value === null || value === undefined) continue;
    if (typeof kind === 'object') {
      if (typeof value !== 'object' || Array.isArray(value)) errors.push(invalid(path, value, 'must be an object'));
      else checkShape(value as Doc, kind, path, errors, unknown);
      continue;
    }
    const problem = scalarProblem(kind, value);
    if (problem) errors.push(invalid(path, value, problem));
  }
}

function scalarProblem(kind: Scalar, value: unknown): string | undefined {
  switch (kind) {
    case 'string':
      return typeof value === 'string' ? undefined : 'must be a string';
    case 'bool':
      return typeof value === 'boolean' ? undefined : 'must be true or false';
    case 'int':
      return Number.isInteger(value) ? undefined : 'must be an integer';
    case 'number':
      return typeof value === 'number' && Number.isFinite(value) ? undefined : 'must be a number';
    case 'duration':
      if (typeof value !== 'string') return 'must be a duration string such as "30s" or "1m0s"';
      try {
        parseDuration(value);
        return undefined;
      } catch (e) {
        return (e as Error).message;
      }
    case 'stringList':
      return Array.isArray(value) && value.every((v) => typeof v === 'string') ? undefined : 'must be a list of strings';
    case 'boolMap':
      return typeof value === 'object' && !Array.isArray(value) && Object.values(value as Doc).every((v) => typeof v === 'boolean')
        ? undefined
        : 'must be a map of feature name to true or false';
    case 'any':
      return undefined;
  }
}

// Field readers over a shape-checked document: absent and null both mean "not set".
function section(d: Doc, key: string): Doc {
  const v = d[key];
  return v && typeof v === 'object' ? (v as Doc) : {};
}
const str = (d: Doc, k: string): string => (typeof d[k] === 'string' ? (d[k] as string) : '');
const bool = (d: Doc, k: string): boolean => d[k] === true;
const num = (d: Doc, k: string): number | undefined => (typeof d[k] === 'number' ? (d[k] as number) : undefined);
const dur = (d: Doc, k: string): number | undefined => (typeof d[k] === 'string' ? parseDuration(d[k] as string) : undefined);
const list = (d: Doc, k: string): string[] => (Array.isArray(d[k]) ? [...(d[k] as string[])] : []);

/**
 * The defaults of this proxy: upstream's, except where it differs on purpose. Logs are klog's text
 * format (component-base's default), and the content type is the JSON this client sends, so that
 * a written configuration tells the truth and reads back without a warning.
 */
export function defaultKubeProxyConfig(): ProxyConfig {
  const c = defaultProxyConfig();
  c.logging.format = 'text';
  c.clientConnection.contentType = 'application/json';
  return c;
}

const JSON_CONTENT_TYPES = new Set(['', 'application/json']);

/**
 * The warning for a clientConnection.contentType other than JSON: upstream defaults to protobuf,
 * which this proxy accepts in a configuration but does not speak (the client sends JSON).
 */
export function contentTypeWarning(contentType: string): string | undefined {
  if (JSON_CONTENT_TYPES.has(contentType.trim().toLowerCase())) return undefined;
  return `clientConnection.contentType ${JSON.stringify(contentType)} is accepted, but requests to the API server use application/json`;
}

/** Upstream's SetDefaults_KubeProxyConfiguration plus the v1alpha1 -> internal conversion. */
function toProxyConfig(d: Doc): ProxyConfig {
  const c = defaultKubeProxyConfig();
  c.bindAddress = str(d, 'bindAddress') || '0.0.0.0';
  const v4 = ipFamilyOf(c.bindAddress) !== 'IPv6';
  const healthz = str(d, 'healthzBindAddress');
  c.healthzBindAddress = healthz === '' ? `${v4 ? '0.0.0.0' : '[::]'}:${HEALTHZ_PORT}` : appendPortIfNeeded(healthz, HEALTHZ_PORT);
  const metrics = str(d, 'metricsBindAddress');
  c.metricsBindAddress = metrics === '' ? `${v4 ? '127.0.0.1' : '[::1]'}:${METRICS_PORT}` : appendPortIfNeeded(metrics, METRICS_PORT);
  c.bindAddressHardFail = bool(d, 'bindAddressHardFail');
  c.enableProfiling = bool(d, 'enableProfiling');
  c.hostnameOverride = str(d, 'hostnameOverride');
  c.clusterCIDR = str(d, 'clusterCIDR');
  c.mode = str(d, 'mode') || 'iptables';
  c.featureGates = { ...(section(d, 'featureGates') as Record<string, boolean>) };

  const cc = section(d, 'clientConnection');
  c.clientConnection = {
    kubeconfig: str(cc, 'kubeconfig'),
    acceptContentTypes: str(cc, 'acceptContentTypes'),
    contentType: str(cc, 'contentType') || c.clientConnection.contentType,
    qps: num(cc, 'qps') || 5,
    burst: num(cc, 'burst') || 10,
  };
  c.configSyncPeriod = dur(d, 'configSyncPeriod') || 15 * 60_000;
  c.nodePortAddresses = list(d, 'nodePortAddresses');
  c.oomScoreAdj = num(d, 'oomScoreAdj') ?? -999;
  c.detectLocalMode = (str(d, 'detectLocalMode') || 'ClusterCIDR') as LocalMode;
  const dl = section(d, 'detectLocal');
  c.detectLocal = { bridgeInterface: str(dl, 'bridgeInterface'), interfaceNamePrefix: str(dl, 'interfaceNamePrefix') };
  c.portRange = str(d, 'portRange');
  c.udpIdleTimeout = dur(d, 'udpIdleTimeout') || 250;

  const lg = section(d, 'logging');
  c.logging = { format: (str(lg, 'format') || c.logging.format) as 'json' | 'text', verbosity: num(lg, 'verbosity') ?? 0 };

  const ipt = section(d, 'iptables');
  c.iptables = {
    masqueradeAll: bool(ipt, 'masqueradeAll'),
    masqueradeBit: num(ipt, 'masqueradeBit') ?? 14,
    localhostNodePorts: ipt.localhostNodePorts === false ? false : true,
    // A zero duration is indistinguishable from "unset" in v1alpha1, so it gets the default.
    syncPeriod: dur(ipt, 'syncPeriod') || 30_000,
    minSyncPeriod: dur(ipt, 'minSyncPeriod') || 1_000,
  };
  const ipvs = section(d, 'ipvs');
  c.ipvs = {
    syncPeriod: dur(ipvs, 'syncPeriod') || 30_000,
    minSyncPeriod: dur(ipvs, 'minSyncPeriod') ?? 0,
    scheduler: str(ipvs, 'scheduler'),
    excludeCIDRs: list(ipvs, 'excludeCIDRs'),
    strictARP: bool(ipvs, 'strictARP'),
    tcpTimeout: dur(ipvs, 'tcpTimeout') ?? 0,
    tcpFinTimeout: dur(ipvs, 'tcpFinTimeout') ?? 0,
    udpTimeout: dur(ipvs, 'udpTimeout') ?? 0,
  };
  const nft = section(d, 'nftables');
  c.nftables = {
    masqueradeAll: bool(nft, 'masqueradeAll'),
    masqueradeBit: num(nft, 'masqueradeBit') ?? 14,
    syncPeriod: dur(nft, 'syncPeriod') || 30_000,
    minSyncPeriod: dur(nft, 'minSyncPeriod') || 1_000,
  };
  const ct = section(d, 'conntrack');
  c.conntrack = {
    maxPerCore: num(ct, 'maxPerCore') ?? 32768,
    min: num(ct, 'min') ?? 131072,
    tcpEstablishedTimeout: dur(ct, 'tcpEstablishedTimeout') ?? 24 * 3_600_000,
    tcpCloseWaitTimeout: dur(ct, 'tcpCloseWaitTimeout') ?? 3_600_000,
    tcpBeLiberal: bool(ct, 'tcpBeLiberal'),
    udpTimeout: dur(ct, 'udpTimeout') ?? 0,
    udpStreamTimeout: dur(ct, 'udpStreamTimeout') ?? 0,
  };
  applyModeSyncPeriods(c);
  return c;
}

/**
 * The effective sync periods come from the section of the selected mode (ipvs, nftables, else
 * iptables), as upstream's v1alpha1 conversion does.
 */
export function applyModeSyncPeriods(c: ProxyConfig): void {
  const s = modeSection(c.mode);
  c.syncPeriod = c[s].syncPeriod;
  c.minSyncPeriod = c[s].minSyncPeriod;
}

/** Which v1alpha1 section holds the sync periods of a mode. */
export function modeSection(mode: string): 'iptables' | 'ipvs' | 'nftables' {
  return mode === 'ipvs' ? 'ipvs' : mode === 'nftables' ? 'nftables' : 'iptables';
}

/**
 * The v1alpha1 document of a ProxyConfig with every field upstream v1.34 has (what --write-config-to
 * writes and /configz serves), so upstream's strict decoder accepts it. Fields upstream dropped are
 * left out; udpIdleTimeout is written only for the userspace mode, which needs it.
 */
export function toV1Alpha1(c: ProxyConfig): Doc {
  const d = formatDuration;
  const doc: Doc = {
    apiVersion: API_VERSION,
    kind: KIND,
    bindAddress: c.bindAddress,
    bindAddressHardFail: c.bindAddressHardFail,
    clientConnection: {
      acceptContentTypes: c.clientConnection.acceptContentTypes,
      burst: c.clientConnection.burst,
      contentType: c.clientConnection.contentType,
      kubeconfig: c.clientConnection.kubeconfig,
      qps: c.clientConnection.qps,
    },
    clusterCIDR: c.clusterCIDR,
    configSyncPeriod: d(c.configSyncPeriod),
    conntrack: {
      maxPerCore: c.conntrack.maxPerCore,
      min: c.conntrack.min,
      tcpBeLiberal: c.conntrack.tcpBeLiberal,
      tcpCloseWaitTimeout: d(c.conntrack.tcpCloseWaitTimeout),
      tcpEstablishedTimeout: d(c.conntrack.tcpEstablishedTimeout),
      udpStreamTimeout: d(c.conntrack.udpStreamTimeout),
      udpTimeout: d(c.conntrack.udpTimeout),
    },
    detectLocal: { bridgeInterface: c.detectLocal.bridgeInterface, interfaceNamePrefix: c.detectLocal.interfaceNamePrefix },
    detectLocalMode: c.detectLocalMode,
    enableProfiling: c.enableProfiling,
    featureGates: { ...c.featureGates },
    healthzBindAddress: c.healthzBindAddress,
    hostnameOverride: c.hostnameOverride,
    iptables: {
      localhostNodePorts: c.iptables.localhostNodePorts,
      masqueradeAll: c.iptables.masqueradeAll,
      masqueradeBit: c.iptables.masqueradeBit,
      minSyncPeriod: d(c.iptables.minSyncPeriod),
      syncPeriod: d(c.iptables.syncPeriod),
    },
    ipvs: {
      excludeCIDRs: c.ipvs.excludeCIDRs.length ? [...c.ipvs.excludeCIDRs] : null,
      minSyncPeriod: d(c.ipvs.minSyncPeriod),
      scheduler: c.ipvs.scheduler,
      strictARP: c.ipvs.strictARP,
      syncPeriod: d(c.ipvs.syncPeriod),
      tcpFinTimeout: d(c.ipvs.tcpFinTimeout),
      tcpTimeout: d(c.ipvs.tcpTimeout),
      udpTimeout: d(c.ipvs.udpTimeout),
    },
    // component-base's LoggingConfiguration as upstream writes its defaults (logs are not buffered here).
    logging: {
      flushFrequency: '5s',
      format: c.logging.format,
      options: { json: { infoBufferSize: '0' }, text: { infoBufferSize: '0' } },
      verbosity: c.logging.verbosity,
    },
    metricsBindAddress: c.metricsBindAddress,
    mode: c.mode,
    nftables: {
      masqueradeAll: c.nftables.masqueradeAll,
      masqueradeBit: c.nftables.masqueradeBit,
      minSyncPeriod: d(c.nftables.minSyncPeriod),
      syncPeriod: d(c.nftables.syncPeriod),
    },
    nodePortAddresses: c.nodePortAddresses.length ? [...c.nodePortAddresses] : null,
    oomScoreAdj: c.oomScoreAdj,
    portRange: c.portRange,
    showHiddenMetricsForVersion: '',
    winkernel: { enableDSR: false, forwardHealthCheckVip: false, networkName: '', rootHnsEndpointName: '', sourceVip: '' },
  };
  if (c.mode === 'userspace') doc.udpIdleTimeout = d(c.udpIdleTimeout);
  return doc;
}

export function encodeKubeProxyConfiguration(c: ProxyConfig): string {
  return stringify(toV1Alpha1(c));
}
