import { createIpvsBackend } from './ipvs-backend.js';

export { createIpvsBackend, IpvsBackend } from './ipvs-backend.js';
export { IPSETS, ipsetName } from './ipsets.js';
export { IPVS_SCHEDULERS, chooseScheduler } from './scheduler.js';
export { DUMMY_DEVICE } from './kernel-addresses.js';
export default createIpvsBackend;
