import { describe, expect, it } from 'vitest';
import { NftScriptModel, expandScript } from './nft-script-model.js';

const base = [
  'add table ip t { comment "x" ; }',
  'add chain ip t a',
  'add chain ip t b',
  'add map ip t m { type ipv4_addr : verdict ; }',
  'add rule ip t a jump b',
  'add element ip t m { 10.0.0.1 comment "ns/s:p" : goto b }',
].join('\n');

describe('nft script model', () => {
  it('applies a script and keeps rules and elements', () => {
    const model = new NftScriptModel();
    model.apply(base);
    const t = model.table('ip', 't')!;
    expect(t.chains.get('a')).toEqual(['jump b']);
    expect(t.containers.get('m')!.elements.get('10.0.0.1')).toEqual({ comment: 'ns/s:p', value: 'goto b' });
  });

  it('refuses what the kernel refuses, and then changes nothing', () => {
    const model = new NftScriptModel();
    model.apply(base);
    expect(() => model.apply('flush chain ip t a\ndelete chain ip t b\n')).toThrow(/referenced/); // still in map m
    expect(model.table('ip', 't')!.chains.get('a')).toEqual(['jump b']);
    expect(() => model.apply('add rule ip t a goto missing')).toThrow(/No such file/);
    expect(() => model.apply('add element ip t m { 10.0.0.1 : goto a }')).toThrow(/another value/);
    expect(() => model.apply('delete element ip t m { 10.0.0.9 }')).toThrow(/No such file/);
    expect(() => model.apply('add map ip t m { type ipv6_addr : verdict ; }')).toThrow(/another definition/);
    model.apply('delete element ip t m { 10.0.0.1 }\nflush chain ip t a\ndelete chain ip t b\n');
    expect(model.table('ip', 't')!.chains.has('b')).toBe(false);
  });

  it('takes the block forms apart into the commands they stand for', () => {
    const script = [
      'add chain ip t a {',
      '\tip daddr 10.0.0.1 jump b comment "x y"',
      '\tnumgen random mod 2 vmap { 0 : goto b , 1 : goto b }',
      '}',
      'add map ip t m { type ipv4_addr : verdict ; elements = { 10.0.0.2 comment "ns/s:p" : goto b, 10.0.0.3 : goto a } ; }',
    ].join('\n');
    expect(expandScript(script)).toEqual([
      'add chain ip t a',
      'add rule ip t a ip daddr 10.0.0.1 jump b comment "x y"',
      'add rule ip t a numgen random mod 2 vmap { 0 : goto b , 1 : goto b }',
      'add map ip t m { type ipv4_addr : verdict ; }',
      'add element ip t m { 10.0.0.2 comment "ns/s:p" : goto b, 10.0.0.3 : goto a }',
    ]);
    const model = new NftScriptModel();
    model.apply(base);
    model.apply(script);
    expect(model.table('ip', 't')!.chains.get('a')).toEqual(['jump b', 'ip daddr 10.0.0.1 jump b comment "x y"', 'numgen random mod 2 vmap { 0 : goto b , 1 : goto b }']);
    expect([...model.table('ip', 't')!.containers.get('m')!.elements.keys()]).toEqual(['10.0.0.1', '10.0.0.2', '10.0.0.3']);
    expect(() => expandScript('add chain ip t a {\n\tjump b\n')).toThrow(/unterminated/);
  });
});
