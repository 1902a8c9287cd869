// Where a V8 heap snapshot's memory goes, by node type and constructor name (self sizes). Reads
// the file as bytes and scans the node array itself, so that snapshots larger than V8's largest
// string can be summarized.
//
//   node --import tsx heap-snapshot.ts FILE [top=25]

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface Meta {
  node_fields: string[];
  node_types: [string[], ...unknown[]];
}

/** The `top` largest (type, name) groups by total self size, as a table. */
export function summarizeHeapSnapshot(file: string, top = 25): string {
  const buf = readFileSync(file);
  const nodesAt = buf.indexOf('"nodes":[');
  const edgesAt = buf.indexOf('"edges":[', nodesAt);
  const stringsAt = buf.indexOf('"strings":[', edgesAt);
  if (nodesAt < 0 || edgesAt < 0 || stringsAt < 0) throw new Error(`${file} is not a V8 heap snapshot`);
  const head = JSON.parse(`${buf.toString('utf8', 0, nodesAt).replace(/,\s*$/, '')}}`) as { snapshot: { meta: Meta } };
  const meta = head.snapshot.meta;
  const strings = JSON.parse(buf.toString('utf8', stringsAt + '"strings":'.length, buf.lastIndexOf(']') + 1)) as string[];
  const fields = meta.node_fields.length;
  const typeAt = meta.node_fields.indexOf('type');
  const nameAt = meta.node_fields.indexOf('name');
  const sizeAt = meta.node_fields.indexOf('self_size');
  const types = meta.node_types[0];
  const groups = new Map<string, { count: number; size: number }>();
  let total = 0;
  let field = 0;
  let current = 0;
  let type = 0;
  let name = 0;
  let size = 0;
  let inNumber = false;
  for (let i = nodesAt + '"nodes":['.length; i < edgesAt; i++) {
    const c = buf[i] as number;
    if (c >= 48 && c <= 57) {
      current = current * 10 + (c - 48);
      inNumber = true;
      continue;
    }
    if (!inNumber) continue;
    inNumber = false;
    if (field === typeAt) type = current;
    else if (field === nameAt) name = current;
    else if (field === sizeAt) size = current;
    current = 0;
    field++;
    if (field === fields) {
      field = 0;
      const t = types[type] ?? String(type);
      // Objects by constructor; strings, code, arrays and the rest by type alone.
      const key = t === 'object' || t === 'closure' ? `${t} ${strings[name] ?? '?'}` : t;
      const g = groups.get(key) ?? { count: 0, size: 0 };
      g.count++;
      g.size += size;
      groups.set(key, g);
      total += size;
    }
  }
  const rows = [...groups].sort((a, b) => b[1].size - a[1].size).slice(0, top);
  const mb = (b: number) => (b / 1048576).toFixed(1);
  return [
    `heap ${mb(total)} MiB in ${[...groups.values()].reduce((s, g) => s + g.count, 0)} nodes`,
    '| type / constructor | count | MiB |',
    '|---|---:|---:|',
    ...rows.map(([k, g]) => `| ${k} | ${g.count} | ${mb(g.size)} |`),
  ].join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = process.argv[2];
  if (!file) throw new Error('usage: heap-snapshot.ts FILE [top]');
  console.log(summarizeHeapSnapshot(file, Number(process.argv[3] ?? 25)));
}
