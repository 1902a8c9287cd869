// What --version prints: the Kubernetes release whose kube-proxy this one follows, and our own.

export const VERSION = '0.1.0';
export const KUBERNETES_COMPAT = 'v1.34.0';

export function versionText(mode: string): string {
  if (mode === 'raw') {
    return JSON.stringify(
      { major: '1', minor: '34', gitVersion: KUBERNETES_COMPAT, implementation: 'kube-proxy-ts', implementationVersion: VERSION, platform: `${process.platform}/${process.arch}` },
      null,
      2,
    );
  }
  return `Kubernetes ${KUBERNETES_COMPAT} (kube-proxy-ts ${VERSION})`;
}
