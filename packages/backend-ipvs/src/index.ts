import { ipvsBackendFactory } from './backend.js';

export { IpvsBackend, ipvsBackendFactory } from './backend.js';
export { ipsetName } from './ipsets.js';
export { DUMMY_DEVICE, IPSETS } from './layout.js';
export { IPVS_SCHEDULERS, chooseScheduler } from './scheduler.js';
export default ipvsBackendFactory;
