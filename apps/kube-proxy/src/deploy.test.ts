// The manifests in deploy/ must work with this binary: the ConfigMap's config loads unchanged and
// the DaemonSet's command line is accepted by the flag parser.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { resolveOptions } from './cli/options.js';
import { decodeKubeProxyConfiguration } from './config/v1alpha1.js';
import { validateProxyConfig } from './config/validate.js';

type Obj = { kind: string; metadata: { name: string; namespace?: string }; [k: string]: unknown };
interface Container {
  command: string[];
  env: unknown[];
  volumeMounts: Array<{ name: string; mountPath: string }>;
  securityContext: { privileged: boolean };
}
interface DaemonSet extends Obj {
  spec: {
    selector: { matchLabels: Record<string, string> };
    template: {
      spec: {
        containers: Container[];
        hostNetwork: boolean;
        serviceAccountName: string;
        volumes: Array<{ name: string; hostPath?: { path: string; type?: string }; configMap?: { name: string } }>;
      };
    };
  };
}
const deployFile = (name: string) => fileURLToPath(new URL(`../../../deploy/${name}`, import.meta.url));
const load = (name: string): Obj[] =>
  parseAllDocuments(readFileSync(deployFile(name), 'utf8')).map((d) => {
    expect(d.errors).toEqual([]);
    return d.toJS() as Obj;
  });

describe('deploy manifests', () => {
  const configMap = load('configmap.yaml')[0] as Obj & { data: Record<string, string> };
  const [ds] = load('daemonset.yaml') as DaemonSet[];
  const rbac = load('rbac.yaml');

  it('the ConfigMap config.conf loads and validates unchanged', () => {
    const { config, warnings } = decodeKubeProxyConfiguration(configMap.data['config.conf'] as string);
    expect(warnings).toEqual([]);
    expect(validateProxyConfig(config)).toEqual([]);
    expect(config).toMatchObject({ bindAddress: '0.0.0.0', clusterCIDR: '10.244.0.0/16', mode: 'iptables', clientConnection: { kubeconfig: '/var/lib/kube-proxy/kubeconfig.conf' } });
    expect(config.iptables).toMatchObject({ masqueradeAll: false, masqueradeBit: 14, syncPeriod: 30_000 });
  });

  it("the DaemonSet's command is accepted by the flag parser with the ConfigMap mounted", () => {
    expect(ds?.kind).toBe('DaemonSet');
    const container = ds?.spec.template.spec.containers[0] as Container;
    expect(container.command[0]).toBe('/usr/local/bin/kube-proxy');
    // The kubelet expands $(NODE_NAME) from the container's environment.
    const argv = (container.command.slice(1) as string[]).map((a) => a.replace('$(NODE_NAME)', 'worker-1'));
    const mount = container.volumeMounts.find((m) => m.name === 'kube-proxy');
    const files: Record<string, string> = Object.fromEntries(Object.entries(configMap.data).map(([k, v]) => [`${mount?.mountPath}/${k}`, v]));
    const options = resolveOptions(argv, { readFile: (p) => files[p] ?? (() => { throw new Error(`ENOENT ${p}`); })() });
    expect(options.configFile).toBe('/var/lib/kube-proxy/config.conf');
    expect(options.config.hostnameOverride).toBe('worker-1');
    expect(options.config.mode).toBe('iptables');
    expect(options.warnings).toEqual([]);
    expect(container.env).toContainEqual({ name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } });
  });

  it('runs as upstream does: host network, privileged, xtables lock and kernel modules mounted', () => {
    const pod = (ds as DaemonSet).spec.template.spec;
    const c = pod.containers[0] as Container;
    expect(pod.hostNetwork).toBe(true);
    expect(c.securityContext.privileged).toBe(true);
    expect(pod.serviceAccountName).toBe('kube-proxy');
    const mounts = Object.fromEntries(c.volumeMounts.map((m) => [m.name, m.mountPath]));
    expect(mounts['xtables-lock']).toBe('/run/xtables.lock');
    expect(mounts['lib-modules']).toBe('/lib/modules');
    const vols = Object.fromEntries(pod.volumes.map((v) => [v.name, v]));
    expect(vols['xtables-lock']?.hostPath).toEqual({ path: '/run/xtables.lock', type: 'FileOrCreate' });
    expect(vols['lib-modules']?.hostPath?.path).toBe('/lib/modules');
    expect(vols['kube-proxy']?.configMap?.name).toBe(configMap.metadata.name);
    expect(ds?.spec.selector.matchLabels).toEqual({ 'k8s-app': 'kube-proxy' });
  });

  it('grants list/watch on services, endpointslices, nodes and servicecidrs and create on events', () => {
    const role = rbac.find((o) => o.kind === 'ClusterRole') as Obj & { rules: Array<{ apiGroups: string[]; resources: string[]; verbs: string[] }> };
    const can = (group: string, resource: string, verb: string) => role.rules.some((r) => r.apiGroups.includes(group) && r.resources.includes(resource) && r.verbs.includes(verb));
    for (const [g, r] of [['', 'services'], ['', 'nodes'], ['discovery.k8s.io', 'endpointslices'], ['networking.k8s.io', 'servicecidrs']] as const) {
      expect(can(g, r, 'list') && can(g, r, 'watch'), `${g}/${r}`).toBe(true);
    }
    expect(can('', 'events', 'create')).toBe(true);
    const binding = rbac.find((o) => o.kind === 'ClusterRoleBinding') as Obj & { roleRef: { name: string }; subjects: Array<{ name: string; namespace: string }> };
    expect(binding.roleRef.name).toBe(role.metadata.name);
    expect(binding.subjects).toContainEqual(expect.objectContaining({ name: 'kube-proxy', namespace: 'kube-system' }));
    expect(rbac.some((o) => o.kind === 'ServiceAccount' && o.metadata.name === 'kube-proxy')).toBe(true);
  });
});
