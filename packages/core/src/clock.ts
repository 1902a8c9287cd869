// The real clock: wall time and Node's timers. Tests pass their own Clock instead.

import type { Clock } from './contract.js';

export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    // A pending sync must not keep the process alive on its own.
    t.unref?.();
    return t;
  },
  clearTimeout(handle) {
    clearTimeout(handle as ReturnType<typeof setTimeout>);
  },
};
