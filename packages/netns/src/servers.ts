// Tiny echo servers run inside pod namespaces: they answer with the pod's name, so a test can
// tell which endpoint a connection reached.
//
// TCP (HTTP/1.1): GET / -> "<name>", GET /clientip -> the peer address the pod saw.
// UDP: any datagram -> "<name>"; the datagram "clientip" -> the peer address.

import { spawn, type ChildProcess } from 'node:child_process';

// Runs as `node -e SCRIPT <name> <ipv6: 0|1> <port>...`; prints "ready" once every socket listens.
const SERVER_SCRIPT = `
const http = require('node:http');
const dgram = require('node:dgram');
const [name, v6, ...ports] = process.argv.slice(1);
const host = v6 === '1' ? '::' : '0.0.0.0';
const peer = (a) => String(a).replace(/^::ffff:/, '');
let pending = 0;
const up = () => { if (--pending === 0) process.stdout.write('ready\\n'); };
for (const p of ports.map(Number)) {
  pending += 2;
  const srv = http.createServer((req, res) => {
    const body = req.url === '/clientip' ? peer(req.socket.remoteAddress) : name;
    res.writeHead(200, { 'content-type': 'text/plain', connection: 'close' });
    res.end(body);
  });
  srv.on('error', (e) => { console.error(String(e)); process.exit(2); });
  srv.listen({ port: p, host, ipv6Only: false }, up);
  const sock = dgram.createSocket({ type: v6 === '1' ? 'udp6' : 'udp4', ipv6Only: false });
  sock.on('message', (msg, rinfo) => {
    const body = msg.toString().trim() === 'clientip' ? peer(rinfo.address) : name;
    sock.send(body, rinfo.port, rinfo.address);
  });
  sock.on('error', (e) => { console.error(String(e)); process.exit(2); });
  sock.bind(p, host, up);
}
`;

// Runs as `node -e SCRIPT <host> <port> <message> <timeoutMs>`; prints the first reply.
export const UDP_CLIENT_SCRIPT = `
const dgram = require('node:dgram');
const [host, port, message, timeout] = process.argv.slice(1);
const sock = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
const timer = setTimeout(() => { console.error('udp: no reply from ' + host + ':' + port); process.exit(1); }, Number(timeout));
sock.on('message', (m) => { clearTimeout(timer); process.stdout.write(m.toString()); sock.close(); });
sock.on('error', (e) => { console.error(String(e)); process.exit(1); });
sock.send(message, Number(port), host);
`;

export interface EchoServer {
  readonly netns: string;
  readonly name: string;
  readonly process: ChildProcess;
  stop(): Promise<void>;
}

/** Starts an echo server inside `netns` and waits until it listens on every port. */
export function startEchoServer(
  netns: string,
  name: string,
  ports: readonly number[],
  options: { ipv6?: boolean; readyTimeoutMs?: number } = {},
): Promise<EchoServer> {
  const child = spawn(
    'ip',
    ['netns', 'exec', netns, process.execPath, '-e', SERVER_SCRIPT, name, options.ipv6 ? '1' : '0', ...ports.map(String)],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let exited = false;
  const exit = new Promise<void>((resolve) => child.once('exit', () => ((exited = true), resolve())));
  const server: EchoServer = {
    netns,
    name,
    process: child,
    async stop() {
      if (!exited) child.kill('SIGKILL');
      await exit;
    },
  };
  return new Promise((resolve, reject) => {
    let stderr = '';
    const fail = (why: string) => {
      clearTimeout(timer);
      void server.stop().then(() => reject(new Error(`echo server ${name} in ${netns}: ${why}${stderr ? `: ${stderr.trim()}` : ''}`)));
    };
    const timer = setTimeout(() => fail('not ready in time'), options.readyTimeoutMs ?? 10_000);
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.stdout.on('data', (b: Buffer) => {
      if (b.toString().includes('ready')) {
        clearTimeout(timer);
        resolve(server);
      }
    });
    child.once('exit', (code) => fail(`exited with code ${code}`));
    child.once('error', (e) => fail(String(e)));
  });
}
