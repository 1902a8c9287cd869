import { describe, expect, it } from 'vitest';
import {
  CHAINS_PER_MAP,
  EndpointMapsPlanner,
  applyEndpointMaps,
  noEndpointMaps,
  inlineEndpointsMap,
  retiredElements,
  withoutRetired,
  type EndpointMapsState,
} from './endpoint-maps.js';

const eps = (...last: number[]) => last.map((n) => `10.1.0.${n} . 80`);

const commit = (held: EndpointMapsState, planner: EndpointMapsPlanner) => applyEndpointMaps(held, planner.next());

describe('endpoint maps', () => {
  it('keeps a chain where it is while its endpoints stay, and moves it to free numbers when they change', () => {
    let p = new EndpointMapsPlanner(noEndpointMaps(), false);
    const a = p.place('service-a', 'tcp', eps(1, 2));
    const b = p.place('service-b', 'tcp', eps(3, 4, 5));
    expect([a.map, a.offset, b.map, b.offset]).toEqual(['endpoints-0', 0, 'endpoints-0', 2]);
    expect(p.isNew(a) && p.isNew(b)).toBe(true);
    let held = commit(noEndpointMaps(), p);

    p = new EndpointMapsPlanner(held, false);
    expect(p.place('service-a', 'tcp', eps(1, 2))).toBe(a);
    expect(p.isNew(a)).toBe(false);
    expect('patch' in p.next() && p.next()).toMatchObject({ patch: { chains: new Map() } });

    // a's endpoints change: numbers 0-1 are still in the kernel, so the new list goes after b
    const a2 = p.place('service-a', 'tcp', eps(1, 2, 6));
    expect([a2.map, a2.offset, p.isNew(a2)]).toEqual(['endpoints-0', 5, true]);
    held = commit(held, p);
    expect(retiredElements(held)).toEqual([['endpoints-0', ['0', '1']]]);

    // deleted, the numbers are free again
    held = withoutRetired(held, ['endpoints-0']);
    expect(retiredElements(held)).toEqual([]);
    p = new EndpointMapsPlanner(held, false);
    expect(p.place('service-c', 'tcp', eps(7, 8)).offset).toBe(0);
  });

  it('retires the range of a chain released, unless the plan placed it again', () => {
    let p = new EndpointMapsPlanner(noEndpointMaps(), false);
    p.place('service-a', 'tcp', eps(1, 2));
    p.place('service-b', 'tcp', eps(3, 4));
    let held = commit(noEndpointMaps(), p);
    p = new EndpointMapsPlanner(held, false);
    p.place('service-a', 'tcp', eps(1, 2));
    p.release('service-a');
    p.release('service-b');
    held = commit(held, p);
    expect([...held.chains.keys()]).toEqual(['service-a']);
    expect(retiredElements(held)).toEqual([['endpoints-0', ['2', '3']]]);
  });

  it('a plan that deletes the retired ranges frees their numbers in the same plan', () => {
    let p = new EndpointMapsPlanner(noEndpointMaps(), false);
    p.place('service-a', 'tcp', eps(1, 2));
    let held = commit(noEndpointMaps(), p);
    p = new EndpointMapsPlanner(held, false);
    p.place('service-a', 'tcp', eps(1, 3));
    expect(p.deleteRetired()).toEqual([['endpoints-0', ['0', '1']]]);
    held = commit(held, p);
    expect(retiredElements(held)).toEqual([]);
    expect(new EndpointMapsPlanner(held, false).place('service-b', 'tcp', eps(5, 6)).offset).toBe(0);
  });

  it(`opens another map after ${CHAINS_PER_MAP} chains`, () => {
    const p = new EndpointMapsPlanner(noEndpointMaps(), false);
    const maps = Array.from({ length: CHAINS_PER_MAP + 1 }, (_, i) => p.place(`service-${i}`, 'tcp', eps(1, 2)).map);
    expect(maps.filter((m) => m === 'endpoints-0')).toHaveLength(CHAINS_PER_MAP);
    expect(maps.at(-1)).toBe('endpoints-1');
  });

  it('keeps the endpoints of each protocol in maps of their own (the value type names the protocol)', () => {
    const p = new EndpointMapsPlanner(noEndpointMaps(), false);
    const maps = ['tcp', 'udp', 'tcp', 'sctp'].map((proto, i) => p.place(`service-${i}`, proto, eps(1, 2)).map);
    expect(maps).toEqual(['endpoints-0', 'endpoints-1', 'endpoints-0', 'endpoints-2']);
  });

  it('a full plan numbers everything anew, in maps named after every map held or found in the kernel', () => {
    let p = new EndpointMapsPlanner(noEndpointMaps(), false);
    p.place('service-a', 'tcp', eps(1, 2));
    const held = commit(noEndpointMaps(), p);
    p = new EndpointMapsPlanner(held, true, ['service-ips', 'endpoints-0', 'endpoints-7']);
    const a = p.place('service-a', 'tcp', eps(1, 2));
    expect([a.map, a.offset, p.isNew(a)]).toEqual(['endpoints-8', 0, true]);
    const next = p.next();
    expect('replace' in next && next.retiredMaps).toEqual(['endpoints-0', 'endpoints-7']);
  });

  it('writes a reference out as the map it stands for, numbered from 0', () => {
    const values = new Map([
      ['endpoints-3 5', '10.1.0.1 . 80'],
      ['endpoints-3 6', '10.1.0.2 . 80'],
    ]);
    const rule = 'meta l4proto tcp dnat ip to numgen random mod 2 offset 5 map @endpoints-3';
    expect(inlineEndpointsMap(rule, (m, k) => values.get(`${m} ${k}`))).toBe('meta l4proto tcp dnat ip to numgen random mod 2 map { 0 : 10.1.0.1 . 80, 1 : 10.1.0.2 . 80 }');
    expect(inlineEndpointsMap(rule, () => undefined)).toContain('(missing)');
    expect(inlineEndpointsMap('meta l4proto tcp dnat to 10.1.0.1:80', () => undefined)).toBe('meta l4proto tcp dnat to 10.1.0.1:80');
  });
});
