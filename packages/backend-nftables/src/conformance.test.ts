import { describeBackendConformance } from '@kube-proxy-ts/testing';
import { nftablesBackendFactory } from './index.js';

// Against the recording runner: inspect() reports the programmed table, so partial syncs after
// random change sequences must end where one full sync of the final state does.
describeBackendConformance(nftablesBackendFactory, { config: { clusterCIDR: '10.0.0.0/8' }, seeds: [1, 2, 3, 4, 5, 6, 7, 8] });
