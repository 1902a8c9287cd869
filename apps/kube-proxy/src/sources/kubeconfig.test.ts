// Reading a kubeconfig as clientcmd does, proven on the wire: a TLS server with its own CA that
// asks for a client certificate, and records what each request presented.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadClusterAccess } from './kubeconfig.js';
import { ApiClient } from './rest-client.js';

const openssl = (dir: string, ...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });

/** A CA, a server certificate for 127.0.0.1 and api.test signed by it, and a client certificate. */
function makeCertificates(dir: string): void {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(dir, 'req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=test-ca', '-days', '2');
  for (const [name, cn, ext] of [
    ['server', '127.0.0.1', 'subjectAltName=IP:127.0.0.1,DNS:api.test'],
    ['client', 'system:kube-proxy', 'extendedKeyUsage=clientAuth'],
  ] as const) {
    openssl(dir, 'req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
    writeFileSync(join(dir, `${name}.ext`), `${ext}\n`);
    openssl(dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`);
  }
}

interface Seen {
  authorization?: string;
  clientCN?: string;
  impersonate?: string;
}

describe('loadClusterAccess', () => {
  let dir: string;
  let server: Server;
  let url: string;
  const seen: Seen[] = [];
  const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kpts-kubeconfig-'));
    makeCertificates(dir);
    const file = (name: string) => readFileSync(join(dir, name));
    server = createServer({ key: file('server.key'), cert: file('server.crt'), ca: file('ca.crt'), requestCert: true, rejectUnauthorized: false }, (req, res) => {
      const peer = (req.socket as TLSSocket).getPeerCertificate();
      const cn = peer?.subject?.CN;
      const as = req.headersDistinct['impersonate-user'];
      const groups = req.headersDistinct['impersonate-group'];
      seen.push({
        ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
        ...(cn ? { clientCN: String(cn) } : {}),
        ...(as ? { impersonate: [...as, ...(groups ?? [])].join(' ') } : {}),
      });
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ kind: 'NodeList', apiVersion: 'v1', metadata: { resourceVersion: '7' }, items: [] }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterEach(() => {
    seen.length = 0;
    for (const [name, value] of [['KUBERNETES_SERVICE_HOST', saved.host], ['KUBERNETES_SERVICE_PORT', saved.port]] as const) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  function kubeconfig(name: string, cluster: Record<string, unknown>, user: Record<string, unknown>, extra: Record<string, unknown> = {}): string {
    const path = join(dir, name);
    writeFileSync(path, stringify({ apiVersion: 'v1', kind: 'Config', clusters: [{ name: 'c', cluster }, { name: 'other', cluster: { server: 'https://10.0.0.1' } }], users: [{ name: 'u', user }], contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }], 'current-context': 'x', ...extra }));
    return path;
  }

  const list = (path: string, master?: string) => new ApiClient(loadClusterAccess(path, master)).get<{ metadata: { resourceVersion: string } }>('/api/v1/nodes');

  it('verifies the server against certificate-authority-data and sends the token', async () => {
    const path = kubeconfig('data', { server: url, 'certificate-authority-data': readFileSync(join(dir, 'ca.crt')).toString('base64') }, { token: 'abc' });
    expect((await list(path)).metadata.resourceVersion).toBe('7');
    expect(seen).toEqual([{ authorization: 'Bearer abc' }]);
    expect(loadClusterAccess(path).credentials).toBe('token');
  });

  it('reads certificate files relative to the kubeconfig and presents the client certificate', async () => {
    const path = kubeconfig('files', { server: `${url}/`, 'certificate-authority': 'ca.crt' }, { 'client-certificate': 'client.crt', 'client-key': join(dir, 'client.key') });
    await list(path);
    expect(seen).toEqual([{ clientCN: 'system:kube-proxy' }]);
    expect(loadClusterAccess(path).credentials).toBe('client certificate');
  });

  it('refuses a server its CA did not sign, unless insecure-skip-tls-verify; checks tls-server-name', async () => {
    const untrusted = kubeconfig('untrusted', { server: url }, { token: 'abc' });
    await expect(list(untrusted)).rejects.toThrow(/self.signed|unable to (get|verify)/i);
    await list(kubeconfig('insecure', { server: url, 'insecure-skip-tls-verify': true }, { token: 'abc' }));
    const ca = readFileSync(join(dir, 'ca.crt')).toString('base64');
    await list(kubeconfig('sni', { server: url, 'certificate-authority-data': ca, 'tls-server-name': 'api.test' }, {}));
    await expect(list(kubeconfig('wrong-sni', { server: url, 'certificate-authority-data': ca, 'tls-server-name': 'other.test' }, {}))).rejects.toThrow(/altnames|other\.test/);
  });

  it('reads a token file, again after it rotated, and basic auth', async () => {
    writeFileSync(join(dir, 'token'), 'first\n');
    const path = kubeconfig('tokenfile', { server: url, 'insecure-skip-tls-verify': true }, { tokenFile: 'token' });
    const access = loadClusterAccess(path);
    expect(access.credentials).toBe('token file');
    const client = new ApiClient(access);
    await client.get('/api/v1/nodes');
    writeFileSync(join(dir, 'token'), 'second\n');
    await client.get('/api/v1/nodes');
    // Within a minute the token read first is still used: a file is not read per request.
    expect(seen.map((s) => s.authorization)).toEqual(['Bearer first', 'Bearer first']);
    await list(kubeconfig('basic', { server: url, 'insecure-skip-tls-verify': true }, { username: 'admin', password: 'p:w' }));
    expect(seen.at(-1)?.authorization).toBe(`Basic ${Buffer.from('admin:p:w').toString('base64')}`);
  });

  it('leaves an exec plugin to client-node, loaded for it, and sends the token the plugin printed', async () => {
    const credential = JSON.stringify({ apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', status: { token: 'from-exec' } });
    const exec = { apiVersion: 'client.authentication.k8s.io/v1', command: 'sh', args: ['-c', `echo '${credential}'`], interactiveMode: 'Never' };
    const path = kubeconfig('exec', { server: url, 'insecure-skip-tls-verify': true }, { exec });
    expect(loadClusterAccess(path).credentials).toBe('exec');
    await list(path);
    expect(seen).toEqual([{ authorization: 'Bearer from-exec' }]);
  });

  it('impersonates as `as` and `as-groups` say, with the credentials of the user', async () => {
    await list(kubeconfig('as', { server: url, 'insecure-skip-tls-verify': true }, { token: 'abc', as: 'system:serviceaccount:kube-system:kube-proxy', 'as-groups': ['g1', 'g2'] }));
    expect(seen).toEqual([{ authorization: 'Bearer abc', impersonate: 'system:serviceaccount:kube-system:kube-proxy g1 g2' }]);
  });

  it('--master replaces the server and keeps the credentials', async () => {
    const path = kubeconfig('master', { server: 'https://192.0.2.1:6443', 'insecure-skip-tls-verify': true }, { token: 'kept' });
    expect(loadClusterAccess(path, url).server).toBe(url);
    await list(path, url);
    expect(seen).toEqual([{ authorization: 'Bearer kept' }]);
    expect(loadClusterAccess(undefined, 'http://10.0.0.1:8080')).toMatchObject({ server: 'http://10.0.0.1:8080', credentials: 'none' });
  });

  it('says what is wrong with a kubeconfig, naming the file', () => {
    expect(() => loadClusterAccess(join(dir, 'missing'))).toThrow(/kubeconfig .*missing: ENOENT/);
    writeFileSync(join(dir, 'broken'), 'clusters: [\n');
    expect(() => loadClusterAccess(join(dir, 'broken'))).toThrow(/kubeconfig .*broken: /);
    expect(() => loadClusterAccess(kubeconfig('no-context', { server: url }, {}, { 'current-context': 'nope' }))).toThrow(/no current context \(nope is not defined\)/);
    expect(() => loadClusterAccess(kubeconfig('no-ca', { server: url, 'certificate-authority': 'absent.crt' }, {}))).toThrow(/certificate-authority .*absent\.crt: ENOENT/);
    expect(() => loadClusterAccess(kubeconfig('no-server', {}, {}))).toThrow(/cluster c has no server/);
    expect(() => loadClusterAccess(kubeconfig('proxy', { server: url, 'proxy-url': 'http://proxy:3128' }, {}))).toThrow(/sets proxy-url, which this kube-proxy does not support/);
  });

  it('uses the in-cluster service account, and says what is missing otherwise', () => {
    delete process.env.KUBERNETES_SERVICE_HOST;
    delete process.env.KUBERNETES_SERVICE_PORT;
    expect(() => loadClusterAccess()).toThrow(/not running in a cluster \(KUBERNETES_SERVICE_HOST\/PORT unset\)/);
    process.env.KUBERNETES_SERVICE_HOST = 'fd00::1';
    process.env.KUBERNETES_SERVICE_PORT = '443';
    // This machine has no service account: the CA file it names is what is missing.
    expect(() => loadClusterAccess()).toThrow(/\/var\/run\/secrets\/kubernetes\.io\/serviceaccount\/ca\.crt/);
  });
});
