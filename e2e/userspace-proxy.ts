// The userspace proxy as a process of its own inside a sandbox's node namespace (its listeners and
// nat rules live there), driven with one JSON line per request: see
// packages/backend-userspace/scripts/netns-proxy.ts.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { sandboxUnsupportedReason } from '@kube-proxy-ts/testing';

const PKG = fileURLToPath(new URL('../packages/backend-userspace/', import.meta.url));
const DRIVER = `${PKG}scripts/netns-proxy.ts`;

/** Why the userspace suites cannot run here, or undefined. */
export function userspaceUnsupportedReason(tools: readonly string[] = []): string | undefined {
  const base = sandboxUnsupportedReason(['iptables', ...tools]);
  if (base) return base;
  if (!existsSync(`${PKG}node_modules/tsx`)) return 'tsx is not installed in packages/backend-userspace';
  return undefined;
}

export interface ProxyProcessOptions {
  /** Runs the proxy with this RLIMIT_NOFILE (soft and hard), through prlimit(1). */
  fileLimit?: number;
}

export class ProxyProcess {
  private readonly child: ChildProcess;
  private readonly replies: Array<(line: string) => void> = [];
  stderr = '';

  constructor(netns: string, options: ProxyProcessOptions = {}) {
    // prlimit and `ip netns exec` both exec their command: the child's pid is the proxy's.
    const argv = ['ip', 'netns', 'exec', netns, process.execPath, '--conditions=@kube-proxy-ts/source', '--import', 'tsx', DRIVER, netns];
    if (options.fileLimit !== undefined) argv.unshift('prlimit', `--nofile=${options.fileLimit}:${options.fileLimit}`);
    this.child = spawn(argv[0]!, argv.slice(1), { cwd: PKG, stdio: ['pipe', 'pipe', 'pipe'] });
    createInterface({ input: this.child.stdout! }).on('line', (line) => this.replies.shift()?.(line));
    this.child.stderr!.on('data', (b: Buffer) => (this.stderr = (this.stderr + b.toString()).slice(-20_000)));
    // A proxy that dies fails every pending request at once.
    this.child.once('exit', (code) => {
      for (const reply of this.replies.splice(0)) reply(JSON.stringify({ ok: false, error: `proxy exited with ${code}` }));
    });
  }

  /** The proxy's process id (for /proc/<pid>/...). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  async request(req: Record<string, unknown>): Promise<Record<string, unknown>> {
    const reply = new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`proxy did not answer ${String(req.op)}: ${this.stderr.slice(-2000)}`)), 30_000);
      this.replies.push((line) => {
        clearTimeout(timer);
        resolve(line);
      });
    });
    this.child.stdin!.write(`${JSON.stringify(req)}\n`);
    const answer = JSON.parse(await reply) as Record<string, unknown>;
    if (answer.ok !== true) throw new Error(`proxy ${String(req.op)} failed: ${String(answer.error)}\n${this.stderr.slice(-2000)}`);
    return answer;
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.stdin!.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
}
