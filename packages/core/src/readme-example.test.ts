// Runs the example backend from README.md, so the documentation cannot drift from the code:
// the fenced block after <!-- example-backend --> is written to a temporary module (importing
// this package's sources) and driven with a tracker checkpoint and a scripted runner.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import type { Backend, BackendContext, BackendFactory } from './contract.js';
import type { CommandOptions } from './command.js';
import { defaultProxyConfig } from './config.js';
import { ProxyStateTracker } from './proxy-state-tracker.js';
import { realClock } from './clock.js';
import { slice, svc } from './builders.test-support.js';
import { emptyNodeInfo } from './node.js';
import { Registry } from 'prom-client';

const readme = readFileSync(fileURLToPath(new URL('../README.md', import.meta.url)), 'utf8');
const block = /<!-- example-backend -->\s*```ts\n([\s\S]*?)```/.exec(readme)?.[1];
const dir = mkdtempSync(join(tmpdir(), 'core-readme-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function loadExample(): Promise<{ factory: BackendFactory; render: (s: unknown) => { script: string } }> {
  const index = fileURLToPath(new URL('./index.ts', import.meta.url));
  const file = join(dir, 'example-backend.ts');
  writeFileSync(file, block!.replace("'@kube-proxy-ts/core'", JSON.stringify(index)));
  const mod = (await import(file)) as { default: BackendFactory; render: (s: unknown) => { script: string } };
  return { factory: mod.default, render: mod.render };
}

function context(calls: { args: readonly string[]; stdin?: string }[], fail = false): BackendContext {
  const logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => logger };
  return {
    logger,
    metrics: new Registry(),
    node: emptyNodeInfo('node-a'),
    clock: realClock,
    runner: {
      async run(command: string, args: readonly string[], opts?: CommandOptions) {
        expect(command).toBe('nft');
        calls.push({ args, stdin: typeof opts?.stdin === 'string' ? opts.stdin : undefined });
        return fail ? { code: 1, stdout: '', stderr: 'Error: syntax error' } : { code: 0, stdout: 'table ip example-proxy {}', stderr: '' };
      },
    },
  };
}

describe('README example backend', () => {
  it('is present in the README', () => {
    expect(block).toBeDefined();
  });

  it('programs ClusterIP ports over their usable endpoints, reports failures without throwing', async () => {
    const { factory } = await loadExample();
    const backend: Backend = factory({ ipFamily: 'IPv4', config: defaultProxyConfig() });
    const calls: { args: readonly string[]; stdin?: string }[] = [];
    await backend.start(context(calls));

    const tracker = new ProxyStateTracker({ ipFamily: 'IPv4', nodeName: 'node-a' });
    tracker.onServiceAdd(svc('ns', 'web', { clusterIP: '172.30.0.10', ports: [{ name: 'http', port: 80, protocol: 'TCP' }, { name: 'dns', port: 53, protocol: 'UDP' }] }));
    tracker.onEndpointSliceAdd(slice('ns', 'web', 'web-1', ['10.0.0.1', { ip: '10.0.0.2', ready: false }, '10.0.0.3'], [{ name: 'http', port: 8080, protocol: 'TCP' }]));
    const { state, changes } = tracker.checkpoint();

    const result = await backend.sync(state, changes);
    expect(result).toEqual({ ok: true, full: true, stats: { servicePorts: 1 } });
    const script = calls.at(-1)!.stdin!;
    expect(script).toContain('ip daddr 172.30.0.10 tcp dport 80 goto svc-0');
    expect(script).toContain('numgen random mod 2 vmap { 0 : goto svc-0-ep0, 1 : goto svc-0-ep1 }');
    expect(script).toContain('meta l4proto tcp dnat to 10.0.0.3:8080;');
    expect(script).not.toContain('10.0.0.2');
    // The UDP port has no endpoints: nothing is programmed for it.
    expect(script).not.toContain('dport 53');
    expect(await backend.inspect!()).toBe('table ip example-proxy {}');

    const failing = factory({ ipFamily: 'IPv4', config: defaultProxyConfig() });
    await expect(failing.start(context([], true))).rejects.toThrow(/syntax error/);
    const bad = await failing.sync(state, changes);
    expect(bad.ok).toBe(false);
    expect(bad.error?.message).toMatch(/syntax error/);

    await backend.cleanup(context(calls));
    expect(calls.at(-1)!.stdin).toBe('add table ip example-proxy\ndelete table ip example-proxy\n');
  });
});
