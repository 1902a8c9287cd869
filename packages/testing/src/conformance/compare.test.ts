import { describe, expect, it } from 'vitest';
import { canonicalJson, compareInspections } from './compare.js';

describe('compareInspections', () => {
  it('reports nothing for equal pictures, whatever the key order, Maps and Sets included', () => {
    expect(compareInspections({ a: 1, b: { c: [1, 2] } }, { b: { c: [1, 2] }, a: 1 })).toEqual([]);
    expect(compareInspections({ m: new Map([['k', new Set(['x'])]]) }, { m: { k: ['x'] } })).toEqual([]);
    expect(canonicalJson({ b: 1, a: { d: 1, c: 2 } })).toEqual({ a: { c: 2, d: 1 }, b: 1 });
  });

  it('names keys present on one side only, with the side', () => {
    expect(compareInspections({ chains: { A: [], B: ['-j X'] } }, { chains: { A: [] } })).toEqual([
      '$.chains.B: only in partial: ["-j X"]',
    ]);
    expect(compareInspections({}, { x: 1 }, { labels: ['after cleanup', 'never synced'] })).toEqual([
      '$.x: only in never synced: 1',
    ]);
  });

  it('reports changed scalars with both values and descends into a single changed array element', () => {
    expect(compareInspections({ a: { port: 80 } }, { a: { port: 8080 } })).toEqual(['$.a.port: partial has 80, full has 8080']);
    expect(compareInspections({ r: [{ ip: '1' }, { ip: '2' }, { ip: '3' }] }, { r: [{ ip: '1' }, { ip: '9' }, { ip: '3' }] })).toEqual([
      '$.r[1].ip: partial has "2", full has "9"',
    ]);
  });

  it('reports missing and extra array elements, and order-only differences', () => {
    expect(compareInspections({ rules: ['a', 'b', 'c'] }, { rules: ['a', 'd'] })).toEqual([
      '$.rules[]: only in partial: "b"',
      '$.rules[]: only in partial: "c"',
      '$.rules[]: only in full: "d"',
    ]);
    expect(compareInspections({ rules: ['a', 'b'] }, { rules: ['b', 'a'] })).toEqual(['$.rules: same elements in another order']);
    expect(compareInspections({ rules: ['a', 'a'] }, { rules: ['a'] })).toEqual(['$.rules[]: only in partial: "a"']);
  });

  it('caps the number of differences', () => {
    const a = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`k${i}`, i]));
    expect(compareInspections(a, {}, { limit: 5 })).toHaveLength(5);
  });
});
