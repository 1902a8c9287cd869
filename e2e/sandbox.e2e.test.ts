import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  assertNotHostNamespace,
  createSandbox,
  listSandboxNamespaces,
  sandboxUnsupportedReason,
  type Sandbox,
} from '@kube-proxy-ts/testing';

const unsupported = sandboxUnsupportedReason();
if (unsupported) console.log(`sandbox e2e skipped: ${unsupported}`);

describe.skipIf(unsupported !== undefined)('network-namespace sandbox', () => {
  let sb: Sandbox | undefined;
  let hostForwarding: string | undefined;
  beforeAll(async () => {
    hostForwarding = readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8');
    sb = await createSandbox({ tag: 'sbe2e', pods: 2 });
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  it('lets the in-cluster client reach each pod by its IP, over TCP and UDP', async () => {
    for (const pod of sb!.pods) {
      expect(await sb!.http('client', pod.ip, 8080)).toBe(pod.name);
      expect(await sb!.udp('client', pod.ip, 8080)).toBe(pod.name);
    }
  });

  it('routes the external client to pods through the node without address translation', async () => {
    const pod = sb!.pods[1]!;
    expect(await sb!.http('external', pod.ip, 8080, { path: '/clientip' })).toBe(sb!.external.ip);
  });

  it('enables forwarding in the node namespace only', async () => {
    expect((await sb!.execOk('node', ['sysctl', '-n', 'net.ipv4.ip_forward'])).trim()).toBe('1');
    expect((await sb!.execOk('pod1', ['sysctl', '-n', 'net.ipv4.ip_forward'])).trim()).toBe('0');
    // Read-only look at the host: its setting is whatever it was before.
    expect(readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8')).toBe(hostForwarding);
  });

  it('refuses namespaces it did not create', async () => {
    await expect(sb!.exec('kpts-not-mine', ['true'])).rejects.toThrow(/unknown namespace/);
  });

  it('refuses the host namespace even under a sandbox-like name', () => {
    // A name bound to our own namespace (a mount only; no network state is touched).
    const name = `kpts-hostcheck-${randomBytes(3).toString('hex')}`;
    execFileSync('ip', ['netns', 'attach', name, String(process.pid)], { timeout: 10_000 });
    try {
      expect(() => assertNotHostNamespace(name)).toThrow(/host's namespace/);
    } finally {
      execFileSync('ip', ['netns', 'del', name], { timeout: 10_000 });
    }
    expect(() => assertNotHostNamespace(sb!.netns('node'))).not.toThrow();
  });

  it('stops a pod server on request', async () => {
    await sb!.stopServer('pod2');
    const r = await sb!.tryHttp('client', sb!.pods[1]!.ip, 8080, { timeoutMs: 1000 });
    expect(r.ok).toBe(false);
    await sb!.startServer('pod2');
    expect(await sb!.http('client', sb!.pods[1]!.ip, 8080)).toBe('pod2');
  });

  it('gives pods IPv6 addresses too when asked (dual-stack)', async () => {
    const v6 = await createSandbox({ tag: 'sbe2e6', pods: 1, ipv6: true });
    try {
      const pod = v6.pods[0]!;
      expect(await v6.http('client', pod.ipv6!, 8080)).toBe('pod1');
      expect(await v6.udp('external', pod.ipv6!, 8080, { message: 'clientip' })).toBe(v6.external.ipv6);
      expect(await v6.http('client', pod.ip, 8080)).toBe('pod1');
    } finally {
      await v6.destroy();
    }
    expect(await listSandboxNamespaces(v6.id)).toEqual([]);
  });

  it('removes what it built when creation fails half-way', async () => {
    // The same port twice: each echo server fails to bind after the namespaces exist.
    await expect(createSandbox({ tag: 'sbfail', pods: 1, ports: [8080, 8080] })).rejects.toThrow(/echo server pod1/);
    expect(await listSandboxNamespaces('kpts-sbfail-')).toEqual([]);
  });

  it('tears everything down', async () => {
    const id = sb!.id;
    expect(await listSandboxNamespaces(id)).toHaveLength(5);
    const pids = sb!.serverPids();
    expect(pids).toHaveLength(2);
    await sb!.destroy();
    await sb!.destroy(); // idempotent
    expect(await listSandboxNamespaces(id)).toEqual([]);
    for (const pid of pids) expect(() => process.kill(pid, 0), `server ${pid} still running`).toThrow();
    await expect(sb!.exec('node', ['true'])).rejects.toThrow(/destroyed/);
  });
});
