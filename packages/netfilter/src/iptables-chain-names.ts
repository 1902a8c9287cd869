// Chain names in upstream's iptables layout: a prefix plus the first 16 characters of
// base32(sha256(...)). iptables limits chain names to 28 characters, and operators grep for
// these exact names, so they must match upstream's byte for byte.

import { createHash } from 'node:crypto';
import { base32Encode } from './nft-names.js';

export const SERVICE_CLUSTER_CHAIN_PREFIX = 'KUBE-SVC-';
export const SERVICE_LOCAL_CHAIN_PREFIX = 'KUBE-SVL-';
export const SERVICE_EXTERNAL_CHAIN_PREFIX = 'KUBE-EXT-';
export const SERVICE_FIREWALL_CHAIN_PREFIX = 'KUBE-FW-';
export const ENDPOINT_CHAIN_PREFIX = 'KUBE-SEP-';

const SERVICE_CHAIN_PREFIXES = [
  SERVICE_CLUSTER_CHAIN_PREFIX,
  SERVICE_LOCAL_CHAIN_PREFIX,
  SERVICE_EXTERNAL_CHAIN_PREFIX,
  SERVICE_FIREWALL_CHAIN_PREFIX,
  ENDPOINT_CHAIN_PREFIX,
];

function hash16(input: string): string {
  return base32Encode(createHash('sha256').update(input).digest()).slice(0, 16);
}

/** The chains of one service port. */
export interface ServicePortChainNames {
  /** KUBE-SVC-: endpoints for Cluster traffic policy. */
  readonly clusterPolicy: string;
  /** KUBE-SVL-: local endpoints for Local traffic policy. */
  readonly localPolicy: string;
  /** KUBE-EXT-: entry point of external (NodePort, externalIP, LB) traffic. */
  readonly external: string;
  /** KUBE-FW-: loadBalancerSourceRanges filter. */
  readonly firewall: string;
}

/**
 * @param servicePortName upstream's ServicePortName.String(): `namespace/name:portName`
 * @param protocol "TCP" | "UDP" | "SCTP" (any case; hashed in lower case as upstream)
 */
export function servicePortChainNames(servicePortName: string, protocol: string): ServicePortChainNames {
  const hash = hash16(servicePortName + protocol.toLowerCase());
  return {
    clusterPolicy: SERVICE_CLUSTER_CHAIN_PREFIX + hash,
    localPolicy: SERVICE_LOCAL_CHAIN_PREFIX + hash,
    external: SERVICE_EXTERNAL_CHAIN_PREFIX + hash,
    firewall: SERVICE_FIREWALL_CHAIN_PREFIX + hash,
  };
}

/**
 * KUBE-SEP- chain of one endpoint.
 * @param hostPort `ip:port`, or `[ip]:port` for IPv6 (Go's net.JoinHostPort)
 */
export function endpointChainName(servicePortName: string, protocol: string, hostPort: string): string {
  return ENDPOINT_CHAIN_PREFIX + hash16(servicePortName + protocol.toLowerCase() + hostPort);
}

/** True for per-service and per-endpoint chains (the ones a sync may create and delete). */
export function isServiceChainName(chain: string): boolean {
  return SERVICE_CHAIN_PREFIXES.some((prefix) => chain.startsWith(prefix));
}
