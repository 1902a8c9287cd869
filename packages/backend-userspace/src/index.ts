import { userspaceBackendFactory } from './backend.js';

export { UserspaceBackend, userspaceBackendFactory, listenAddress, type UserspaceBackendOptions } from './backend.js';
export { planListeners, type ListenerPlan, type Plan } from './sync-plan.js';
export {
  CONTAINER_PORTAL_CHAIN,
  HOST_PORTAL_CHAIN,
  CONTAINER_NODEPORT_CHAIN,
  HOST_NODEPORT_CHAIN,
  PORTAL_CHAINS,
  PORTAL_JUMPS,
  ENDPOINT_DIAL_TIMEOUTS_MS,
  type PortalChain,
} from './layout.js';
export { portalRules, portalsPayload, cleanupPayload, type Portal, type PortalKind, type PortalRule, type PortalTarget } from './portals.js';
export { ListenerMetrics, userspaceMetrics } from './metrics.js';
export { AffinityPool, RoundRobinBalancer, type BalancerEndpoint, type BalancerOptions } from './balancer.js';
export { dialWithFailover, type DialResult } from './failover.js';
export { UdpSessionTable } from './udp-sessions.js';
export { TcpServiceListener, TCP_KEEPALIVE_MS } from './tcp-listener.js';
export { UdpServiceListener } from './udp-listener.js';
export type { ServiceListener } from './listener.js';
export { parsePortRange, PortAllocator, type PortRange } from './port-range.js';
export { connectionLimits, parseFileLimit, raiseFileLimit, withLimits, WANTED_FILE_LIMIT, type ConnectionLimits } from './fd-limit.js';
export { ConnectionBudget, ListenerBudget, type LimitReached } from './limits.js';

export default userspaceBackendFactory;
