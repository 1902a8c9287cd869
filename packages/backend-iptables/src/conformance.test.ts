import { describeBackendConformance } from '@kube-proxy-ts/testing';
import { IptablesBackend } from './backend.js';

// Recording runner: inspect() pictures the rules the backend believes the kernel holds after
// its transactions, so partial syncs must end where one full sync of the same state ends.
describeBackendConformance((options) => new IptablesBackend({ ...options, flavour: 'nft' }), { config: { clusterCIDR: '10.0.0.0/8' } });
describeBackendConformance((options) => new IptablesBackend({ ...options, flavour: 'nft' }), { ipFamily: 'IPv6', config: { clusterCIDR: 'fd00:10::/48' } });
