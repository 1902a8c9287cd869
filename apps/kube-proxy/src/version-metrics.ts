// kubernetes_build_info, the series every Kubernetes component exports (component-base's version
// metric), with upstream's labels so that dashboards and the KubeVersionMismatch alert read it:
//  - major, minor, git_version: the Kubernetes release whose kube-proxy this one follows (what
//    --version prints), so a proxy on a cluster of that release counts as the same version;
//  - platform: os/arch in Go's words (linux/amd64);
//  - git_commit, git_tree_state, build_date: empty, as nothing records them in the build;
//  - go_version, compiler: empty. This is no Go program; the Node.js runtime's version is in
//    nodejs_version_info, and this implementation's own in --version=raw.

import { Gauge, type Registry } from 'prom-client';
import { KUBERNETES_COMPAT } from './version.js';

const NAME = 'kubernetes_build_info';
const LABELS = ['major', 'minor', 'git_version', 'git_commit', 'git_tree_state', 'build_date', 'go_version', 'compiler', 'platform'] as const;
type Label = (typeof LABELS)[number];

/** Node's process.arch in GOARCH's words; unknown ones as Node names them. */
const GOARCH: Record<string, string> = { x64: 'amd64', ia32: '386', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64', loong64: 'loong64', mips: 'mips', mipsel: 'mipsle' };

export function buildInfoLabels(platform: string = process.platform, arch: string = process.arch): Record<Label, string> {
  const [, major = '', minor = ''] = /^v(\d+)\.(\d+)/.exec(KUBERNETES_COMPAT) ?? [];
  return {
    major,
    minor,
    git_version: KUBERNETES_COMPAT,
    git_commit: '',
    git_tree_state: '',
    build_date: '',
    go_version: '',
    compiler: '',
    platform: `${platform}/${GOARCH[arch] ?? arch}`,
  };
}

/** Registers kubernetes_build_info (value 1) once per registry. */
export function registerBuildInfo(registry: Registry, labels: Record<Label, string> = buildInfoLabels()): void {
  if (registry.getSingleMetric(NAME)) return;
  new Gauge({
    name: NAME,
    help: "A metric with a constant '1' value labeled by major, minor, git version, git commit, git tree state, build date, Go version, and compiler from which Kubernetes was built, and platform on which it is running.",
    labelNames: LABELS,
    registers: [registry],
  }).set(labels, 1);
}
