// Upstream's KubeProxyConfiguration validation rules, reported against the v1alpha1 field names
// a user writes (iptables.masqueradeBit, ipvs.scheduler, ...).

import { cidrFamilyOf, isValidIP, type ProxyConfig } from '@kube-proxy-ts/core';
import { formatDuration } from './duration.js';
import { KNOWN_FEATURE_GATES } from './feature-gates.js';
import { invalid, type FieldError } from './field-error.js';
import { hostPortProblem } from './net.js';
import { modeSection } from './v1alpha1.js';

export const BUILTIN_MODES = ['iptables', 'ipvs', 'nftables', 'userspace'] as const;
export const IPVS_SCHEDULERS = ['rr', 'wrr', 'lc', 'wlc', 'lblc', 'lblcr', 'sh', 'dh', 'sed', 'nq', 'mh', ''] as const;
export const LOCAL_MODES = ['ClusterCIDR', 'NodeCIDR', 'BridgeInterface', 'InterfaceNamePrefix', ''] as const;

// npm package names (scoped or not): what a third-party backend mode may be.
const PACKAGE_NAME = /^(?:@[a-z0-9][a-z0-9._~-]*\/)?[a-z0-9][a-z0-9._~-]*$/;

export function isBuiltinMode(mode: string): boolean {
  return (BUILTIN_MODES as readonly string[]).includes(mode);
}

export function validateProxyConfig(c: ProxyConfig): FieldError[] {
  const errs: FieldError[] = [];
  const d = formatDuration;

  if (c.iptables.masqueradeBit < 0 || c.iptables.masqueradeBit > 31) {
    errs.push(invalid('iptables.masqueradeBit', c.iptables.masqueradeBit, 'must be within the range [0, 31]'));
  }
  if (c.mode === 'nftables' && (c.nftables.masqueradeBit < 0 || c.nftables.masqueradeBit > 31)) {
    errs.push(invalid('nftables.masqueradeBit', c.nftables.masqueradeBit, 'must be within the range [0, 31]'));
  }

  // The sync periods that apply are those of the selected mode's section.
  const s = modeSection(c.mode);
  if (c.syncPeriod <= 0) errs.push(invalid(`${s}.syncPeriod`, d(c.syncPeriod), 'must be greater than 0'));
  if (c.minSyncPeriod < 0) errs.push(invalid(`${s}.minSyncPeriod`, d(c.minSyncPeriod), 'must be greater than or equal to 0'));
  if (c.minSyncPeriod > c.syncPeriod) {
    errs.push(invalid(`${s}.syncPeriod`, d(c.minSyncPeriod), `must be greater than or equal to ${s}.minSyncPeriod`));
  }

  if (c.mode === 'ipvs') {
    for (const [k, v] of [['tcpTimeout', c.ipvs.tcpTimeout], ['tcpFinTimeout', c.ipvs.tcpFinTimeout], ['udpTimeout', c.ipvs.udpTimeout]] as const) {
      if (v < 0) errs.push(invalid(`ipvs.${k}`, d(v), 'must be greater than or equal to 0'));
    }
    if (!(IPVS_SCHEDULERS as readonly string[]).includes(c.ipvs.scheduler)) {
      errs.push(invalid('ipvs.scheduler', c.ipvs.scheduler, `must be one of ${IPVS_SCHEDULERS.filter(Boolean).join(', ')}, or blank (rr)`));
    }
    c.ipvs.excludeCIDRs.forEach((cidr, i) => {
      if (!cidrFamilyOf(cidr)) errs.push(invalid(`ipvs.excludeCIDRs[${i}]`, cidr, 'must be a valid CIDR'));
    });
  }

  const ct = c.conntrack;
  if (ct.maxPerCore < 0) errs.push(invalid('conntrack.maxPerCore', ct.maxPerCore, 'must be greater than or equal to 0'));
  if (ct.min < 0) errs.push(invalid('conntrack.min', ct.min, 'must be greater than or equal to 0'));
  for (const k of ['tcpEstablishedTimeout', 'tcpCloseWaitTimeout', 'udpTimeout', 'udpStreamTimeout'] as const) {
    if (ct[k] < 0) errs.push(invalid(`conntrack.${k}`, d(ct[k]), 'must be greater than or equal to 0'));
  }
  if (c.oomScoreAdj !== null && (c.oomScoreAdj < -1000 || c.oomScoreAdj > 1000)) {
    errs.push(invalid('oomScoreAdj', c.oomScoreAdj, 'must be within the range [-1000, 1000]'));
  }

  if (!isBuiltinMode(c.mode) && !PACKAGE_NAME.test(c.mode)) {
    errs.push(invalid('mode', c.mode, `must be ${BUILTIN_MODES.join(', ')}, the name of an installed backend package, or blank (iptables)`));
  }
  if (c.clientConnection.burst < 0) errs.push(invalid('clientConnection.burst', c.clientConnection.burst, 'must be greater than or equal to 0'));
  if (c.clientConnection.qps < 0) errs.push(invalid('clientConnection.qps', c.clientConnection.qps, 'must be greater than or equal to 0'));
  if (c.configSyncPeriod <= 0) errs.push(invalid('configSyncPeriod', d(c.configSyncPeriod), 'must be greater than 0'));
  if (c.udpIdleTimeout <= 0) errs.push(invalid('udpIdleTimeout', d(c.udpIdleTimeout), 'must be greater than 0'));

  if (!isValidIP(c.bindAddress)) errs.push(invalid('bindAddress', c.bindAddress, 'not a valid textual representation of an IP address'));
  // An empty address disables that server.
  for (const k of ['healthzBindAddress', 'metricsBindAddress'] as const) {
    if (c[k] === '') continue;
    const p = hostPortProblem(c[k]);
    if (p) errs.push(invalid(k, p.value, p.detail));
  }

  if (c.clusterCIDR !== '') errs.push(...validateClusterCIDR(c.clusterCIDR));
  if (!validPortRange(c.portRange)) errs.push(invalid('portRange', c.portRange, 'must be a valid port range (e.g. 300-2000)'));

  c.nodePortAddresses.forEach((a, i) => {
    if (a === 'primary') {
      if (i !== 0 || c.nodePortAddresses.length !== 1) errs.push(invalid(`nodePortAddresses[${i}]`, a, "can't use both 'primary' and CIDRs"));
    } else if (!cidrFamilyOf(a)) {
      errs.push(invalid(`nodePortAddresses[${i}]`, a, "must be a valid CIDR (or the single value 'primary')"));
    }
  });

  if (!(LOCAL_MODES as readonly string[]).includes(c.detectLocalMode)) {
    errs.push(invalid('detectLocalMode', c.detectLocalMode, `supported values: ${LOCAL_MODES.filter(Boolean).map((m) => `"${m}"`).join(', ')}`));
  }
  if (c.detectLocalMode === 'BridgeInterface' && c.detectLocal.bridgeInterface === '') {
    errs.push(invalid('detectLocal.bridgeInterface', '', 'must not be empty when detectLocalMode is BridgeInterface'));
  }
  if (c.detectLocalMode === 'InterfaceNamePrefix' && c.detectLocal.interfaceNamePrefix === '') {
    errs.push(invalid('detectLocal.interfaceNamePrefix', '', 'must not be empty when detectLocalMode is InterfaceNamePrefix'));
  }

  errs.push(...validateFeatureGates(c.featureGates));

  if (c.logging.format !== 'json' && c.logging.format !== 'text') {
    errs.push(invalid('logging.format', c.logging.format, 'supported values: "json", "text"'));
  }
  if (!Number.isInteger(c.logging.verbosity) || c.logging.verbosity < 0) {
    errs.push(invalid('logging.verbosity', c.logging.verbosity, 'must be a non-negative integer'));
  }
  return errs;
}

/** As upstream's feature gate: an unknown name, or a locked gate set against its value, is an error. */
function validateFeatureGates(gates: Readonly<Record<string, boolean>>): FieldError[] {
  const errs: FieldError[] = [];
  for (const [name, value] of Object.entries(gates)) {
    const known = KNOWN_FEATURE_GATES.get(name);
    if (!known) errs.push(invalid(`featureGates.${name}`, value, `unrecognized feature gate: ${name}`));
    else if (known.lockedTo !== undefined && known.lockedTo !== value) {
      errs.push(invalid(`featureGates.${name}`, value, `cannot set feature gate ${name} to ${value}, feature is locked to ${known.lockedTo}`));
    }
  }
  return errs;
}

function validateClusterCIDR(value: string): FieldError[] {
  const cidrs = value.split(',');
  if (cidrs.length > 2) {
    return [invalid('clusterCIDR', value, 'only one CIDR allowed or a valid DualStack CIDR (e.g. 10.100.0.0/16,fde4:8dba:82e1::/48)')];
  }
  const families = cidrs.map((c) => cidrFamilyOf(c.trim()));
  if (families.some((f) => f === undefined)) {
    return [invalid('clusterCIDR', value, 'must be a valid CIDR block (e.g. 10.100.0.0/16 or fde4:8dba:82e1::/48)')];
  }
  if (families.length === 2 && families[0] === families[1]) {
    return [invalid('clusterCIDR', value, 'must be a valid DualStack CIDR (e.g. 10.100.0.0/16,fde4:8dba:82e1::/48): at most one CIDR per IP family')];
  }
  return [];
}

/** "", "8080", "300-2000" or "300+1700", as upstream's ParsePortRange. */
export function validPortRange(text: string): boolean {
  if (text === '') return true;
  if (/^\d+$/.test(text.trim())) return Number(text) >= 1 && Number(text) <= 65535;
  const m = /^(\d+)([-+])(\d+)$/.exec(text.trim());
  if (!m) return false;
  const base = Number(m[1]);
  const other = Number(m[3]);
  const high = m[2] === '+' ? base + other : other;
  return base >= 1 && base <= 65535 && high >= base && high <= 65535;
}
