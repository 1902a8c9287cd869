import { describe, expect, it } from 'vitest';
import { base32Encode, isNftServiceObjectName, nftEndpointChainBase, nftHashedName, nftServiceChainBase } from './nft-names.js';

const svc1 = { namespace: 'ns1', name: 'svc1', port: 'p80', protocol: 'TCP' };

describe('nft names', () => {
  it('encodes base32 as RFC 4648', () => {
    expect(base32Encode(new TextEncoder().encode('foobar'))).toBe('MZXW6YTBOI======');
    expect(base32Encode(new TextEncoder().encode('f'))).toBe('MY======');
  });

  it('matches upstream service and endpoint chain bases', () => {
    expect(`service-${nftServiceChainBase(svc1)}`).toBe('service-ULMVA6XW-ns1/svc1/tcp/p80');
    expect(`endpoint-${nftEndpointChainBase(svc1, '10.180.0.1', 80)}`).toBe('endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80');
  });

  it('replaces IPv6 colons and truncates long names', () => {
    expect(nftEndpointChainBase(svc1, 'fd00::1', 80)).toMatch(/^[A-Z2-7]{8}-ns1\/svc1\/tcp\/p80__fd00\.\.1\/80$/);
    const long = nftHashedName('x'.repeat(300));
    expect(long).toHaveLength(240);
    expect(long.endsWith('...')).toBe(true);
  });

  it('tells per-service objects from fixed ones', () => {
    expect(isNftServiceObjectName('service-ULMVA6XW-ns1/svc1/tcp/p80')).toBe(true);
    expect(isNftServiceObjectName('services')).toBe(false);
  });
});
