import { iptablesBackendFactory } from './backend.js';

export * from './backend.js';
export * from './layout.js';
export * from './rules.js';
export * from './sync-plan.js';
export * from './jumps.js';

export default iptablesBackendFactory;
