import { describe, expect, it } from 'vitest';
import { cidrContains } from '@kube-proxy-ts/core';
import { PLAN, podIP, podIPv6 } from './plan.js';
import { createSandbox } from './sandbox.js';

describe('addressing plan', () => {
  // 80 pods is createSandbox's upper bound.
  const pods = Array.from({ length: 80 }, (_, i) => i + 1);

  it('puts every pod in the pod CIDR, apart from the gateway and the client, outside the service CIDR', () => {
    for (const [fam, addr] of [
      [PLAN, podIP],
      [PLAN.ipv6, podIPv6],
    ] as const) {
      const ips = pods.map(addr);
      expect(new Set(ips).size).toBe(pods.length);
      for (const ip of ips) {
        expect(cidrContains(fam.podCIDR, ip), ip).toBe(true);
        expect(cidrContains(fam.clusterCIDR, ip), ip).toBe(true);
        expect(cidrContains(fam.serviceCIDR, ip), ip).toBe(false);
      }
      expect(ips).not.toContain(fam.podGateway);
      expect(ips).not.toContain(fam.clientIP);
      expect(cidrContains(fam.podCIDR, fam.clientIP)).toBe(true);
      expect(cidrContains(fam.clusterCIDR, fam.nodeIP)).toBe(false);
    }
  });
});

describe('createSandbox', () => {
  it('refuses bad options before creating anything', async () => {
    // Without root it refuses for that reason first; either way nothing is created.
    await expect(createSandbox({ tag: 'Not Valid' })).rejects.toThrow(/createSandbox: /);
    await expect(createSandbox({ pods: 0 })).rejects.toThrow(/createSandbox: /);
  });
});
