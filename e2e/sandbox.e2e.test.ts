import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, listSandboxNamespaces, sandboxUnsupportedReason, type Sandbox } from '@kube-proxy-ts/testing';

const unsupported = sandboxUnsupportedReason();
if (unsupported) console.log(`sandbox e2e skipped: ${unsupported}`);

describe.skipIf(unsupported !== undefined)('network-namespace sandbox', () => {
  let sb: Sandbox | undefined;
  beforeAll(async () => {
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
  });

  it('refuses namespaces it did not create', async () => {
    await expect(sb!.exec('kpts-not-mine', ['true'])).rejects.toThrow(/unknown namespace/);
  });

  it('stops a pod server on request', async () => {
    await sb!.stopServer('pod2');
    const r = await sb!.tryHttp('client', sb!.pods[1]!.ip, 8080, { timeoutMs: 1000 });
    expect(r.ok).toBe(false);
    await sb!.startServer('pod2');
    expect(await sb!.http('client', sb!.pods[1]!.ip, 8080)).toBe('pod2');
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
