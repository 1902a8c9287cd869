// The floors of the workspace, checked on the real tree: the import restrictions of
// eslint.config.js (each shown able to fail on a snippet that breaks it), and one definition
// per metric name.

import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const RULE = 'no-restricted-imports';
const eslint = new ESLint({ cwd: ROOT });

/** The floor messages ESLint reports for `code` as if it were the file at `path` (relative to the root). */
async function floorErrors(path: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: join(ROOT, path) });
  return (result?.messages ?? []).filter((m) => m.ruleId === RULE).map((m) => m.message);
}

describe('import floors (eslint.config.js)', () => {
  it.each([
    ['packages/core/src/probe.ts', "import { readFileSync } from 'node:fs';", /core has no I\/O/],
    ['packages/core/src/probe.ts', "import { spawn } from 'child_process';", /core has no I\/O/],
    ['packages/core/src/probe.ts', "import { readFile } from 'node:fs/promises';", /core has no I\/O/],
    ['packages/core/src/probe.ts', "import { createServer } from 'node:http';", /core has no I\/O/],
    ['packages/core/src/probe.ts', "import { hostname } from 'node:os';", /core has no I\/O/],
    ['packages/core/src/probe.ts', "import { runProcess } from '@kube-proxy-ts/netfilter';", /imports no other workspace package/],
    ['packages/backend-iptables/src/probe.ts', "import { service } from '@kube-proxy-ts/testing';", /is for tests/],
    ['apps/kube-proxy/src/probe.ts', "import { createSandbox } from '@kube-proxy-ts/testing';", /is for tests/],
    ['packages/netfilter/src/probe.ts', "import { runBackendConformance } from '@kube-proxy-ts/testing/conformance';", /is for tests/],
    ['e2e/vm/probe.ts', "import { startEchoServer } from '../../packages/testing/src/netns/servers.js';", /not another package's src/],
    ['bench/probe.ts', "import { testContext } from '../packages/testing/src/test-context.js';", /not another package's src/],
    ['packages/backend-ipvs/src/probe.ts', "import { runProcess } from '../../netfilter/src/exec-runner.js';", /not another package's src/],
    ['apps/kube-proxy/src/probe.ts', "import type { Backend } from '@kube-proxy-ts/core/src/contract.js';", /through its exports map/],
  ])('%s: %s is refused', async (path, code, message) => {
    const errors = await floorErrors(path, code);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(message);
  });

  it.each([
    ['packages/core/src/probe.test.ts', "import { readFileSync } from 'node:fs';"],
    ['packages/core/src/probe.ts', "import { join } from 'node:path';"],
    ['packages/backend-iptables/src/probe.test.ts', "import { service } from '@kube-proxy-ts/testing';"],
    ['packages/backend-iptables/src/probe.test-support.ts', "import { service } from '@kube-proxy-ts/testing';"],
    ['packages/backend-ipvs/src/test-support/probe.ts', "import { service } from '@kube-proxy-ts/testing';"],
    ['packages/backend-userspace/scripts/probe.ts', "import { UserspaceBackend } from '../src/index.js';"],
    ['e2e/vm/probe.ts', "import { stateTracker } from '@kube-proxy-ts/backend-ipvs/test-support';"],
    ['apps/kube-proxy/src/probe.ts', "import { createSandbox } from '@kube-proxy-ts/netns';"],
  ])('%s: %s is allowed', async (path, code) => {
    expect(await floorErrors(path, code)).toEqual([]);
  });

  it('holds on the whole tree', { timeout: 180_000 }, async () => {
    const results = await eslint.lintFiles(['.']);
    const broken = results.flatMap((r) => r.messages.filter((m) => m.ruleId === RULE).map((m) => `${relative(ROOT, r.filePath)}:${m.line} ${m.message}`));
    expect(broken).toEqual([]);
  });
});

/** Non-test TypeScript under packages/<name>/src and apps/<name>/src. */
function sourceFiles(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')) out.push(p);
    }
  };
  for (const top of ['packages', 'apps']) {
    for (const pkg of readdirSync(join(ROOT, top), { withFileTypes: true })) {
      if (!pkg.isDirectory()) continue;
      try {
        walk(join(ROOT, top, pkg.name, 'src'));
      } catch {
        // a folder without src/
      }
    }
  }
  return out;
}

describe('metrics', () => {
  it('are each defined in one place', () => {
    // core's counter()/gauge()/histogram() with a literal name, or prom-client's constructors.
    const definition = /\b(?:counter|gauge|histogram)\(\s*[\w.]+,\s*\{\s*name:\s*'([a-z0-9_]+)'|\bnew (?:Counter|Gauge|Histogram)(?:<[^>]*>)?\(\{\s*name:\s*'([a-z0-9_]+)'/g;
    const places = new Map<string, string[]>();
    for (const file of sourceFiles()) {
      for (const m of readFileSync(file, 'utf8').matchAll(definition)) {
        const name = (m[1] ?? m[2])!;
        places.set(name, [...(places.get(name) ?? []), relative(ROOT, file)]);
      }
    }
    // The scan sees the metrics it is meant to (a broken pattern would find nothing).
    expect(places.get('sync_proxy_rules_iptables_restore_failures_total')).toEqual(['packages/netfilter/src/metrics.ts']);
    expect(places.get('sync_proxy_rules_no_local_endpoints_total')).toEqual(['apps/kube-proxy/src/daemon/metrics.ts']);
    const twice = [...places].filter(([, files]) => files.length > 1).map(([name, files]) => `${name}: ${files.join(', ')}`);
    expect(twice).toEqual([]);
  });
});
