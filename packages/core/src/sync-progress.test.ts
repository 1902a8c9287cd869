import { describe, expect, it } from 'vitest';
import { SyncProgress } from './sync-progress.js';

function recorder() {
  const lines: Array<{ fields: Record<string, unknown>; msg: string }> = [];
  const log = (fields: object, msg?: string) => void lines.push({ fields: fields as Record<string, unknown>, msg: msg ?? '' });
  const logger = { info: log, warn: log, error: log, debug: log, child: () => logger };
  return { lines, logger };
}

describe('SyncProgress', () => {
  it('says nothing for a short sync, then reports every interval how many Services are written', () => {
    let now = 1000;
    const { lines, logger } = recorder();
    const p = new SyncProgress(logger as never, { now: () => now }, 10_000, 5000);
    now += 4000;
    p.written(3000);
    expect(lines).toEqual([]);
    now += 1500;
    p.written(4000);
    now += 1000;
    p.written(5000); // within the interval of the last line
    now += 5000;
    p.written(9000);
    expect(lines.map((l) => [l.msg, l.fields])).toEqual([
      ['Sync in progress: Services written', { written: 4000, of: 10_000, elapsedMs: 5500 }],
      ['Sync in progress: Services written', { written: 9000, of: 10_000, elapsedMs: 11_500 }],
    ]);
    // Done is not progress: the sync's own line says it.
    now += 10_000;
    p.written(10_000);
    expect(lines).toHaveLength(2);
  });
});
