// Where the API server is and how to authenticate to it, read as client-go's clientcmd reads it:
// a kubeconfig file (its current context; relative paths against the file's directory), --master
// replacing its server, or the in-cluster service account. Tokens, token files (re-read, as they
// rotate), client certificates and basic auth are handled here; exec plugins and auth providers
// are left to client-node's KubeConfig, loaded only for such a user: the library and its generated
// API weigh about 75 MiB of memory that a proxy with a token or a certificate never needs.

import { readFileSync } from 'node:fs';
import type { RequestOptions } from 'node:https';
import { isIPv6 } from 'node:net';
import { dirname, isAbsolute, join } from 'node:path';
import { parse } from 'yaml';

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** How often a token file is read again (client-go's cached file token source re-reads each minute). */
const TOKEN_FILE_REFRESH_MS = 60_000;

export interface ClusterTLS {
  readonly ca?: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
  readonly insecureSkipTLSVerify: boolean;
  readonly serverName?: string;
}

/** What every request to the API server needs. */
export interface ClusterAccess {
  /** The server URL, e.g. https://10.0.0.1:6443 (no trailing slash). */
  readonly server: string;
  readonly tls: ClusterTLS;
  /** Sets the credentials on one request's options (the Authorization header, or what an exec plugin returns). */
  authenticate(options: RequestOptions): Promise<void>;
  /** For logs: the kind of credentials, never their value. */
  readonly credentials: 'none' | 'token' | 'token file' | 'client certificate' | 'basic' | 'exec' | 'auth provider';
}

interface RawKubeconfig {
  'current-context'?: string;
  clusters?: Array<{ name?: string; cluster?: Record<string, unknown> }>;
  users?: Array<{ name?: string; user?: Record<string, unknown> }>;
  contexts?: Array<{ name?: string; context?: { cluster?: string; user?: string } }>;
}

/**
 * The client configuration kube-proxy uses: the kubeconfig file when given (with `master`
 * replacing its server, as upstream's --master does), only `master` when that is all there is,
 * and the in-cluster service account otherwise.
 */
export function loadClusterAccess(path?: string, master?: string): ClusterAccess {
  if (path) return fromKubeconfigFile(path, master);
  if (master) return { server: trimServer(master), tls: { insecureSkipTLSVerify: false }, authenticate: async () => {}, credentials: 'none' };
  const host = process.env.KUBERNETES_SERVICE_HOST;
  const port = process.env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) throw new Error('no kubeconfig or master given, and not running in a cluster (KUBERNETES_SERVICE_HOST/PORT unset)');
  return {
    server: `https://${isIPv6(host) ? `[${host}]` : host}:${port}`,
    tls: { ca: readFileSync(join(SERVICE_ACCOUNT_DIR, 'ca.crt')), insecureSkipTLSVerify: false },
    authenticate: bearerFromFile(join(SERVICE_ACCOUNT_DIR, 'token')),
    credentials: 'token file',
  };
}

function fromKubeconfigFile(path: string, master: string | undefined): ClusterAccess {
  let doc: RawKubeconfig;
  try {
    doc = (parse(readFileSync(path, 'utf8')) ?? {}) as RawKubeconfig;
  } catch (err) {
    throw new Error(`kubeconfig ${path}: ${(err as Error).message}`);
  }
  if (typeof doc !== 'object' || doc === null) throw new Error(`kubeconfig ${path} is not a kubeconfig`);
  const contextName = doc['current-context'];
  const context = doc.contexts?.find((c) => c?.name === contextName)?.context;
  if (!contextName || !context) throw new Error(`kubeconfig ${path} has no current context${contextName ? ` (${contextName} is not defined)` : ''}`);
  const cluster = doc.clusters?.find((c) => c?.name === context.cluster)?.cluster;
  if (!cluster) throw new Error(`kubeconfig ${path} has no current cluster (context ${contextName} names cluster ${String(context.cluster)})`);
  const user = doc.users?.find((u) => u?.name === context.user)?.user ?? {};
  const base = dirname(path);
  const file = (field: string, value: unknown) => {
    if (typeof value !== 'string' || value === '') return undefined;
    const full = isAbsolute(value) ? value : join(base, value);
    try {
      return readFileSync(full);
    } catch (err) {
      throw new Error(`kubeconfig ${path}: ${field} ${full}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  const data = (value: unknown) => (typeof value === 'string' && value !== '' ? Buffer.from(value, 'base64') : undefined);
  const server = master ?? cluster.server;
  if (typeof server !== 'string' || server === '') throw new Error(`kubeconfig ${path}: cluster ${String(context.cluster)} has no server`);
  const cert = data(user['client-certificate-data']) ?? file('client-certificate', user['client-certificate']);
  const key = data(user['client-key-data']) ?? file('client-key', user['client-key']);
  const ca = data(cluster['certificate-authority-data']) ?? file('certificate-authority', cluster['certificate-authority']);
  const tls: ClusterTLS = {
    ...(ca ? { ca } : {}),
    ...(cert ? { cert } : {}),
    ...(key ? { key } : {}),
    insecureSkipTLSVerify: cluster['insecure-skip-tls-verify'] === true,
    ...(typeof cluster['tls-server-name'] === 'string' && cluster['tls-server-name'] !== '' ? { serverName: cluster['tls-server-name'] } : {}),
  };
  if (typeof cluster['proxy-url'] === 'string' && cluster['proxy-url'] !== '') {
    throw new Error(`kubeconfig ${path}: cluster ${String(context.cluster)} sets proxy-url, which this kube-proxy does not support; reach the API server directly`);
  }
  const impersonation = impersonationHeaders(user);
  const access = { server: trimServer(server), tls };
  if (impersonation) {
    // Impersonation applies whatever the credentials: wrap them.
    const inner = credentialsOf(path, master, base, user, cert !== undefined);
    return {
      ...access,
      credentials: inner.credentials,
      authenticate: async (o) => {
        await inner.authenticate(o);
        o.headers = { ...(o.headers as Record<string, string | string[]> | undefined), ...impersonation };
      },
    };
  }
  return { ...access, ...credentialsOf(path, master, base, user, cert !== undefined) };
}

/** `as` and `as-groups` of a kubeconfig user: client-go's Impersonate-* headers. */
function impersonationHeaders(user: Record<string, unknown>): Record<string, string | string[]> | undefined {
  const as = user.as;
  const groups = Array.isArray(user['as-groups']) ? user['as-groups'].filter((g): g is string => typeof g === 'string') : [];
  if (typeof as !== 'string' || as === '') return undefined;
  return { 'Impersonate-User': as, ...(groups.length > 0 ? { 'Impersonate-Group': groups } : {}) };
}

/** How a kubeconfig user authenticates. */
function credentialsOf(path: string, master: string | undefined, base: string, user: Record<string, unknown>, hasCert: boolean): Pick<ClusterAccess, 'authenticate' | 'credentials'> {
  if (user.exec || user['auth-provider']) {
    return { authenticate: delegated(path, master), credentials: user.exec ? 'exec' : 'auth provider' };
  }
  if (typeof user.token === 'string' && user.token !== '') {
    const header = `Bearer ${user.token}`;
    return { authenticate: async (o) => setHeader(o, header), credentials: 'token' };
  }
  const tokenFile = user.tokenFile ?? user['token-file'];
  if (typeof tokenFile === 'string' && tokenFile !== '') {
    const full = isAbsolute(tokenFile) ? tokenFile : join(base, tokenFile);
    bearerOf(full, path);
    return { authenticate: bearerFromFile(full), credentials: 'token file' };
  }
  if (typeof user.username === 'string' && user.username !== '') {
    const header = `Basic ${Buffer.from(`${user.username}:${String(user.password ?? '')}`).toString('base64')}`;
    return { authenticate: async (o) => setHeader(o, header), credentials: 'basic' };
  }
  return { authenticate: async () => {}, credentials: hasCert ? 'client certificate' : 'none' };
}

function trimServer(server: string): string {
  return server.replace(/\/+$/, '');
}

function setHeader(options: RequestOptions, authorization: string): void {
  options.headers = { ...(options.headers as Record<string, string> | undefined), Authorization: authorization };
}

function bearerOf(file: string, kubeconfig?: string): string {
  let token: string;
  try {
    token = readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new Error(`${kubeconfig ? `kubeconfig ${kubeconfig}: ` : ''}token file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (token === '') throw new Error(`token file ${file} is empty`);
  return `Bearer ${token}`;
}

/** A bearer token read from `file`, again once a minute; a failed re-read keeps the last token. */
function bearerFromFile(file: string): ClusterAccess['authenticate'] {
  let header: string | undefined;
  let readAt = 0;
  return async (options) => {
    const now = Date.now();
    if (header === undefined || now - readAt >= TOKEN_FILE_REFRESH_MS) {
      try {
        header = bearerOf(file);
      } catch (err) {
        if (header === undefined) throw err;
      }
      readAt = now;
    }
    setHeader(options, header);
  };
}

/** Exec plugins and auth providers: client-node's KubeConfig, imported on first use. */
function delegated(path: string, master: string | undefined): ClusterAccess['authenticate'] {
  let loaded: Promise<{ applyToHTTPSOptions(o: RequestOptions): Promise<void> }> | undefined;
  return async (options) => {
    loaded ??= import('@kubernetes/client-node').then(({ KubeConfig }) => {
      const kc = new KubeConfig();
      kc.loadFromFile(path);
      if (master) {
        const current = kc.getCurrentCluster();
        kc.loadFromOptions({
          clusters: kc.clusters.map((c) => (c.name === current?.name ? { ...c, server: master } : c)),
          users: kc.users,
          contexts: kc.contexts,
          currentContext: kc.currentContext,
        });
      }
      return kc;
    });
    const kc = await loaded;
    // Only the credentials: the agent and TLS settings are ours.
    const probe: RequestOptions = {};
    await kc.applyToHTTPSOptions(probe);
    const auth = (probe.headers as Record<string, string> | undefined)?.Authorization ?? (probe.headers as Record<string, string> | undefined)?.authorization;
    if (auth) setHeader(options, auth);
    if (probe.cert) options.cert = probe.cert;
    if (probe.key) options.key = probe.key;
  };
}
