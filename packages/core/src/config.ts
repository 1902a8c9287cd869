// The proxy's configuration after decoding and defaulting: KubeProxyConfiguration v1alpha1
// with upstream's field names, durations as milliseconds. Decoding and validation of files and
// flags live in the app; backends only read this.

export type ProxyMode = 'iptables' | 'ipvs' | 'nftables' | 'userspace' | (string & {});
export type LocalMode = 'ClusterCIDR' | 'NodeCIDR' | 'BridgeInterface' | 'InterfaceNamePrefix';

export interface ProxyConfig {
  bindAddress: string;
  healthzBindAddress: string;
  metricsBindAddress: string;
  bindAddressHardFail: boolean;
  enableProfiling: boolean;
  hostnameOverride: string;
  /** Comma-separated CIDRs, at most one per family; "" when unset. */
  clusterCIDR: string;
  mode: ProxyMode;
  featureGates: Record<string, boolean>;
  clientConnection: {
    kubeconfig: string;
    acceptContentTypes: string;
    contentType: string;
    qps: number;
    burst: number;
  };
  /** ms */
  configSyncPeriod: number;
  /** Node port addresses: CIDRs, or ["primary"]; empty means all local addresses. */
  nodePortAddresses: string[];
  oomScoreAdj: number | null;
  /** ms */
  syncPeriod: number;
  /** ms */
  minSyncPeriod: number;
  detectLocalMode: LocalMode;
  detectLocal: { bridgeInterface: string; interfaceNamePrefix: string };
  portRange: string;
  logging: { format: 'json' | 'text'; verbosity: number };
  iptables: {
    masqueradeAll: boolean;
    masqueradeBit: number;
    localhostNodePorts: boolean;
    /** ms */
    syncPeriod: number;
    /** ms */
    minSyncPeriod: number;
  };
  ipvs: {
    /** ms */
    syncPeriod: number;
    /** ms */
    minSyncPeriod: number;
    scheduler: string;
    excludeCIDRs: string[];
    strictARP: boolean;
    /** ms; 0 keeps the kernel's value */
    tcpTimeout: number;
    /** ms; 0 keeps the kernel's value */
    tcpFinTimeout: number;
    /** ms; 0 keeps the kernel's value */
    udpTimeout: number;
  };
  nftables: {
    masqueradeAll: boolean;
    masqueradeBit: number;
    /** ms */
    syncPeriod: number;
    /** ms */
    minSyncPeriod: number;
  };
  conntrack: {
    maxPerCore: number;
    min: number;
    /** ms */
    tcpEstablishedTimeout: number;
    /** ms */
    tcpCloseWaitTimeout: number;
    tcpBeLiberal: boolean;
    /** ms; 0 keeps the kernel's value */
    udpTimeout: number;
    /** ms; 0 keeps the kernel's value */
    udpStreamTimeout: number;
  };
  /** userspace mode: idle timeout of a UDP client session, ms (upstream --udp-timeout, 250 ms). */
  udpIdleTimeout: number;
}

/** Upstream's defaults for KubeProxyConfiguration v1alpha1 on Linux. */
export function defaultProxyConfig(): ProxyConfig {
  return {
    bindAddress: '0.0.0.0',
    healthzBindAddress: '0.0.0.0:10256',
    metricsBindAddress: '127.0.0.1:10249',
    bindAddressHardFail: false,
    enableProfiling: false,
    hostnameOverride: '',
    clusterCIDR: '',
    mode: 'iptables',
    featureGates: {},
    clientConnection: {
      kubeconfig: '',
      acceptContentTypes: '',
      contentType: 'application/vnd.kubernetes.protobuf',
      qps: 5,
      burst: 10,
    },
    configSyncPeriod: 15 * 60_000,
    nodePortAddresses: [],
    oomScoreAdj: -999,
    syncPeriod: 30_000,
    minSyncPeriod: 1_000,
    detectLocalMode: 'ClusterCIDR',
    detectLocal: { bridgeInterface: '', interfaceNamePrefix: '' },
    portRange: '',
    logging: { format: 'json', verbosity: 0 },
    iptables: {
      masqueradeAll: false,
      masqueradeBit: 14,
      localhostNodePorts: true,
      syncPeriod: 30_000,
      minSyncPeriod: 1_000,
    },
    ipvs: {
      syncPeriod: 30_000,
      minSyncPeriod: 0,
      scheduler: '',
      excludeCIDRs: [],
      strictARP: false,
      tcpTimeout: 0,
      tcpFinTimeout: 0,
      udpTimeout: 0,
    },
    nftables: {
      masqueradeAll: false,
      masqueradeBit: 14,
      syncPeriod: 30_000,
      minSyncPeriod: 1_000,
    },
    conntrack: {
      maxPerCore: 32768,
      min: 131072,
      tcpEstablishedTimeout: 24 * 3600_000,
      tcpCloseWaitTimeout: 3600_000,
      tcpBeLiberal: false,
      udpTimeout: 0,
      udpStreamTimeout: 0,
    },
    udpIdleTimeout: 250,
  };
}
