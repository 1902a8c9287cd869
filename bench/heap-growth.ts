// Does this Node apply V8's --heap-growing-percent when it is set at run time, as the daemon does
// once its lists are in (apps/kube-proxy/src/main.ts)? Holds about 100 MiB of live objects made
// with garbage around them, then makes a burst of garbage (as a sync does) three ways: V8's
// default growth, the cap set at run time, and the cap plus one collection. Prints V8's heap and
// the RSS after the burst; exits non-zero when the last is not well below the first.
//
//   node --import tsx heap-growth.ts            (runs the three cases with this node)
//   NODE=/path/to/node node --import tsx heap-growth.ts

import { spawnSync } from 'node:child_process';
import { setFlagsFromString } from 'node:v8';

type Case = 'default' | 'capped' | 'capped+gc';

function run(how: Case): void {
  const live: object[][] = [];
  const garbage = () => Array.from({ length: 200_000 }, (_, i) => ({ i, s: `x${i}` })).length;
  for (let i = 0; i < 100; i++) {
    live.push(Array.from({ length: 10_000 }, (_, j) => ({ j, s: `v${j}` })));
    garbage();
  }
  if (how !== 'default') setFlagsFromString('--heap-growing-percent=10');
  if (how === 'capped+gc') (globalThis as { gc?: () => void }).gc?.();
  let burst: string[][] = [];
  for (let i = 0; i < 40; i++) burst.push(Array.from({ length: 10_000 }, (_, j) => `r${j}x${i}`));
  burst = [];
  const m = process.memoryUsage();
  process.stdout.write(`${JSON.stringify({ how, heapTotal: m.heapTotal >> 20, heapUsed: m.heapUsed >> 20, rss: m.rss >> 20, live: live.length + burst.length })}\n`);
}

const which = process.argv[2] as Case | undefined;
if (which) {
  run(which);
} else {
  const node = process.env.NODE ?? process.execPath;
  const results = (['default', 'capped', 'capped+gc'] as const).map((how) => {
    const r = spawnSync(node, ['--max-semi-space-size=1', '--expose-gc', ...process.execArgv, process.argv[1] as string, how], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${how}: exit ${r.status}: ${r.stderr}`);
    return JSON.parse(r.stdout) as { how: Case; heapTotal: number; heapUsed: number; rss: number };
  });
  const version = spawnSync(node, ['--version'], { encoding: 'utf8' }).stdout.trim();
  console.log(`node ${version}: V8 heap total / used and RSS after a burst of garbage, MiB`);
  for (const r of results) console.log(`  ${r.how.padEnd(10)} ${r.heapTotal} / ${r.heapUsed}, RSS ${r.rss}`);
  const [base, , tight] = results as [(typeof results)[0], (typeof results)[0], (typeof results)[0]];
  if (tight.heapTotal > base.heapTotal * 0.75) {
    console.error('the cap set at run time did not shrink the heap: this Node ignores it');
    process.exit(1);
  }
}
