import { nftablesBackendFactory } from './backend.js';

export { NftablesBackend, nftablesBackendFactory, type NftablesBackendOptions } from './backend.js';
export { planSync, type HeldState, type NftablesPlanInput, type NftablesPlanLimits, type NftablesSyncPlan } from './sync-plan.js';
export {
  TABLE,
  BASE_CHAINS,
  HELPER_CHAINS,
  SERVICE_CONTAINERS,
  SERVICES_CHAIN,
  SERVICE_IPS_MAP,
  SERVICE_NODEPORTS_MAP,
  NO_ENDPOINT_SERVICES_MAP,
  NO_ENDPOINT_NODEPORTS_MAP,
  FIREWALL_IPS_MAP,
  CLUSTER_IPS_SET,
  NODEPORT_IPS_SET,
  HAIRPIN_CONNECTIONS_SET,
  nftFamily,
  type NftFamily,
} from './layout.js';
export { NftTransaction } from './transaction.js';

export default nftablesBackendFactory;
