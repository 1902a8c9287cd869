import { iptablesBackendFactory } from './backend.js';

export { IptablesBackend, iptablesBackendFactory, type IptablesBackendOptions } from './backend.js';
export { planSync, DEFAULT_LIMITS, LEGACY_LIMITS, type IptablesPlanInput, type IptablesPlanLimits, type IptablesSyncPlan, type Transaction } from './sync-plan.js';
export { computeRules, renderFullPayload, type ComputeOptions, type RuleOptions, type RuleSet, type ServicePortRules } from './rules.js';
export {
  KUBE_SERVICES,
  KUBE_EXTERNAL_SERVICES,
  KUBE_NODEPORTS,
  KUBE_POSTROUTING,
  KUBE_MARK_MASQ,
  KUBE_FORWARD,
  KUBE_PROXY_FIREWALL,
  KUBE_PROXY_CANARY,
  JUMP_RULES,
} from './layout.js';

export default iptablesBackendFactory;
