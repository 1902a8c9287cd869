import { describe, expect, it } from 'vitest';
import { canonicalIP, cidrContains, cidrFamilyOf, ipFamilyOf, isValidCIDR, isValidIP, isValidPort, joinHostPort, parseCIDR, parseIP } from './ip.js';

describe('parseIP', () => {
  it.each([
    ['10.0.0.1', 'IPv4', '10.0.0.1'],
    ['010.000.000.001', 'IPv4', '10.0.0.1'],
    ['255.255.255.255', 'IPv4', '255.255.255.255'],
    ['::ffff:10.0.0.1', 'IPv4', '10.0.0.1'],
    ['2001:DB8:0:0:0:0:0:1', 'IPv6', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:1', 'IPv6', '2001:db8::1:0:0:1'],
    ['::', 'IPv6', '::'],
    ['::1', 'IPv6', '::1'],
    ['fe80::1:2:3:4', 'IPv6', 'fe80::1:2:3:4'],
    ['64:ff9b::10.1.2.3', 'IPv6', '64:ff9b::a01:203'],
    ['2001:db8:1:2:3:4:5:0', 'IPv6', '2001:db8:1:2:3:4:5:0'],
  ])('%s is %s, spelled %s', (input, family, text) => {
    expect(parseIP(input)).toMatchObject({ family, text });
    expect(ipFamilyOf(input)).toBe(family);
    expect(canonicalIP(input)).toBe(text);
  });

  it.each(['', ' 10.0.0.1', '10.0.0', '10.0.0.256', '1.2.3.4.5', 'a.b.c.d', ':::', '1::2::3', '2001:db8::1%eth0', '[::1]', '12345::', '1:2:3:4:5:6:7:8:9', '10.0.0.1/24', undefined, null])('%j is not an IP', (input) => {
    expect(isValidIP(input as string)).toBe(false);
    expect(ipFamilyOf(input as string)).toBeUndefined();
  });
});

describe('parseCIDR', () => {
  it('masks host bits and canonicalizes', () => {
    expect(parseCIDR('10.1.2.3/8')).toMatchObject({ family: 'IPv4', ip: '10.0.0.0', prefixLength: 8, text: '10.0.0.0/8', address: '10.1.2.3' });
    expect(parseCIDR('2001:DB8::1/64')).toMatchObject({ family: 'IPv6', text: '2001:db8::/64' });
    expect(parseCIDR('0.0.0.0/0')?.text).toBe('0.0.0.0/0');
  });
  it.each(['10.0.0.0/33', '10.0.0.0', '10.0.0.0/', '10.0.0.0/-1', '::/129', 'x/8', '::ffff:1.2.3.4/120'])('%s is not a CIDR', (s) => {
    expect(isValidCIDR(s)).toBe(false);
  });
  it('tests membership per family', () => {
    expect(cidrContains('10.0.0.0/8', '10.200.0.1')).toBe(true);
    expect(cidrContains('10.0.0.0/8', '11.0.0.1')).toBe(false);
    expect(cidrContains('2001:db8::/32', '2001:db8:ffff::1')).toBe(true);
    expect(cidrContains('10.0.0.0/8', '2001:db8::1')).toBe(false);
  });
});

describe('host:port and ports', () => {
  it('brackets IPv6 hosts as Go net.JoinHostPort', () => {
    expect(joinHostPort('10.0.0.1', 80)).toBe('10.0.0.1:80');
    expect(joinHostPort('2001:db8::1', 443)).toBe('[2001:db8::1]:443');
  });
  it.each([[1, true], [65535, true], [0, false], [65536, false], [80.5, false], ['80', false], [undefined, false]])('isValidPort(%j) = %s', (n, ok) => {
    expect(isValidPort(n)).toBe(ok);
  });
});

describe('cidrFamilyOf', () => {
  it('gives the family of a valid CIDR only', () => {
    expect(['10.0.0.0/8', 'fd00::/64', '0.0.0.0/0', '::/0'].map(cidrFamilyOf)).toEqual(['IPv4', 'IPv6', 'IPv4', 'IPv6']);
    expect(['10.0.0.1', '10.0.0.0/33', 'fd00::/129', '', 'garbage/8', null].map(cidrFamilyOf)).toEqual([undefined, undefined, undefined, undefined, undefined, undefined]);
  });
});
