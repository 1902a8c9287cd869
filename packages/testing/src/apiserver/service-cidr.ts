// A networking.k8s.io/v1 ServiceCIDR as a cluster holds it (cluster-scoped), for tests.

export function serviceCIDR(name: string, cidrs: string[]): { apiVersion: string; kind: string; metadata: { name: string }; spec: { cidrs: string[] } } {
  return { apiVersion: 'networking.k8s.io/v1', kind: 'ServiceCIDR', metadata: { name }, spec: { cidrs } };
}
