// `node --max-old-space-size=8000 --import tsx bench/heap-compare.ts OLD.heapsnapshot NEW.heapsnapshot [N]`: what
// grew between two V8 heap snapshots of one process. Objects are counted by constructor name (other nodes by their
// V8 type: strings, closures, arrays, code…), with their shallow sizes; the N groups that grew most are printed,
// by size. A snapshot is one JSON document (nodes as a flat array of numbers, `snapshot.meta` naming the fields).
import { readFile } from 'node:fs/promises';
import { z } from 'zod';

const snapshotSchema = z.object({
  snapshot: z.object({
    meta: z.object({ node_fields: z.array(z.string()), node_types: z.array(z.unknown()) }),
  }),
  nodes: z.array(z.number()),
  strings: z.array(z.string()),
});

interface Group { count: number; bytes: number }

async function groups(file: string): Promise<Map<string, Group>> {
  const s = snapshotSchema.parse(JSON.parse(await readFile(file, 'utf8')));
  const fields = s.snapshot.meta.node_fields;
  const types = z.array(z.string()).parse(s.snapshot.meta.node_types[0]);
  const width = fields.length;
  const iType = fields.indexOf('type');
  const iName = fields.indexOf('name');
  const iSize = fields.indexOf('self_size');
  if (iType < 0 || iName < 0 || iSize < 0) throw new Error(`${file}: node_fields lack type/name/self_size: ${fields.join(',')}`);
  const out = new Map<string, Group>();
  for (let i = 0; i < s.nodes.length; i += width) {
    const type = types[s.nodes[i + iType] ?? -1] ?? '?';
    const name = s.strings[s.nodes[i + iName] ?? -1] ?? '?';
    // Objects by their constructor; strings, code, arrays and the rest by their type (their names are contents).
    const key = type === 'object' || type === 'closure' ? `${type} ${name}` : type;
    const g = out.get(key) ?? { count: 0, bytes: 0 };
    g.count++;
    g.bytes += s.nodes[i + iSize] ?? 0;
    out.set(key, g);
  }
  return out;
}

const [oldFile, newFile, topArg] = process.argv.slice(2);
if (oldFile === undefined || newFile === undefined) throw new Error('usage: heap-compare OLD.heapsnapshot NEW.heapsnapshot [N]');
const top = topArg === undefined ? 30 : Number(topArg);
const before = await groups(oldFile);
const after = await groups(newFile);
const rows = [...new Set([...before.keys(), ...after.keys()])].map((k) => {
  const a = before.get(k) ?? { count: 0, bytes: 0 };
  const b = after.get(k) ?? { count: 0, bytes: 0 };
  return { k, count: b.count - a.count, bytes: b.bytes - a.bytes, total: b.bytes };
}).sort((x, y) => y.bytes - x.bytes);
const total = (m: Map<string, Group>): number => [...m.values()].reduce((s, g) => s + g.bytes, 0);
process.stdout.write(`heap ${(total(before) / 1e6).toFixed(1)} MB -> ${(total(after) / 1e6).toFixed(1)} MB\n`);
process.stdout.write('| group | Δ count | Δ MB | MB after |\n|---|---|---|---|\n');
for (const r of rows.slice(0, top)) process.stdout.write(`| ${r.k} | ${r.count} | ${(r.bytes / 1e6).toFixed(2)} | ${(r.total / 1e6).toFixed(2)} |\n`);
