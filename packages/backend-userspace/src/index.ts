import { createUserspaceBackend } from './factory.js';

export { createUserspaceBackend };
export { UserspaceBackend, listenAddress, type UserspaceBackendOptions } from './backend.js';
export { AffinityPool, RoundRobinBalancer, type BalancerEndpoint, type BalancerOptions } from './balancer.js';
export { dialWithFailover, ENDPOINT_DIAL_TIMEOUTS_MS, type DialResult } from './failover.js';
export { UdpSessionTable } from './udp-sessions.js';
export { TcpServiceListener, TCP_KEEPALIVE_MS } from './tcp-listener.js';
export { UdpServiceListener } from './udp-listener.js';
export type { ServiceListener } from './listener.js';
export { ListenerMetrics, userspaceMetrics } from './metrics.js';
export { planListeners, type ListenerPlan, type Plan } from './plan.js';
export { parsePortRange, PortAllocator, type PortRange } from './port-range.js';
export * from './portals.js';
export { connectionLimits, parseFileLimit, raiseFileLimit, withLimits, WANTED_FILE_LIMIT, type ConnectionLimits } from './fd-limit.js';
export { ConnectionBudget, ListenerBudget, type LimitReached } from './limits.js';
export default createUserspaceBackend;
