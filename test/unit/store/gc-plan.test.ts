// The GC planner's rules, one small bucket each: what goes and what stays, at the boundaries.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';

import { KeyLayout, planGc, type Digest, type GcDivergent, type GcGeneration, type GcInput, type GcObject, type GcPlan, type GcRecord, type Generation, type Seq } from '../../../src/store/index.js';

const H = 3600_000;
const NOW = Date.parse('2026-12-06T12:00:00Z');
const layout = new KeyLayout('tl', 'pair');
const dg = (s: string): Digest => createHash('sha256').update(s).digest('hex') as Digest;

interface Rec { seq: number; c?: string; kind?: 'full' | 'delta'; at: number; blob?: string; packs?: string[] }
interface Gen { g: number; claimedAt?: number | null; head?: boolean; recs: Rec[]; refused?: number[]; headSeq?: number }

/** A bucket: generations of records (times in hours before NOW), each record's blob and packs present (old enough),
 *  plus extra objects. */
function bucket(gens: Gen[], extra: { objects?: GcObject[]; divergent?: GcDivergent[]; protectedDigests?: string[]; unreadableLists?: string[]; retentionH?: number; graceH?: number; imagesNamed?: string[] | null } = {}): GcInput {
  const objects: GcObject[] = [];
  const old = NOW - 100 * H;
  const obj = (key: string, size = 10, lastModified = old): void => void objects.push({ key, size, lastModified });
  const chunkLists = new Map<string, string[] | null>();
  const generations: GcGeneration[] = gens.map((gen) => {
    const g = gen.g as Generation;
    const records = new Map<Seq, { record: GcRecord } | { refused: string }>();
    for (const r of gen.recs) {
      const blob = dg(r.blob ?? `blob-${gen.g}-${r.seq}`);
      let chunks: GcRecord['chunks'] = null;
      if (r.packs !== undefined) {
        const list = dg(`list-${gen.g}-${r.seq}`);
        chunks = { digest: list, size: 10, files: 1, count: r.packs.length, bytes: 10 };
        chunkLists.set(list, extra.unreadableLists?.includes(`${gen.g}/${r.seq}`) ? null : r.packs.map(dg));
        obj(layout.blobKey(list));
        for (const p of r.packs) if (!objects.some((o) => o.key === layout.packKey(dg(p)))) obj(layout.packKey(dg(p)), 1000);
      }
      records.set(r.seq as Seq, { record: { seq: r.seq as Seq, container: r.c ?? 'web', kind: r.kind ?? 'delta', publishedAt: NOW - r.at * H, digest: blob, chunks } });
      obj(layout.journalKey(g, r.seq as Seq), 1);
      if (!objects.some((o) => o.key === layout.blobKey(blob))) obj(layout.blobKey(blob), 100);
    }
    for (const s of gen.refused ?? []) {
      records.set(s as Seq, { refused: 'unsigned' });
      obj(layout.journalKey(g, s as Seq), 1);
    }
    const seqs = [...records.keys()];
    const headSeq = (gen.headSeq ?? Math.max(0, ...seqs)) as Seq;
    const containers: Record<string, Seq> = {};
    for (const r of gen.recs) containers[r.c ?? 'web'] = Math.max(containers[r.c ?? 'web'] ?? 0, r.seq) as Seq;
    obj(layout.headKey(g), 1);
    if (gen.claimedAt !== null && gen.claimedAt !== undefined) obj(layout.claimKey(g), 1);
    return {
      generation: g,
      claimed: gen.claimedAt !== null && gen.claimedAt !== undefined,
      claimedAt: gen.claimedAt === null || gen.claimedAt === undefined ? null : NOW - gen.claimedAt * H,
      head: gen.head === false ? null : { seq: headSeq, containers, updatedAt: NOW },
      records,
    };
  });
  objects.push(...(extra.objects ?? []));
  return {
    layout, now: NOW, retentionMs: (extra.retentionH ?? 24) * H, graceMs: (extra.graceH ?? 1) * H, objects, generations, refusedGenerations: [],
    divergent: extra.divergent ?? [], protectedDigests: new Set(extra.protectedDigests ?? []), chunkLists,
    imagesNamed: extra.imagesNamed === null ? null : new Set(extra.imagesNamed ?? []),
  };
}

const gone = (p: GcPlan): Set<string> => new Set([...p.first, ...p.second].map((d) => d.key));
const rec = (g: number, s: number): string => layout.journalKey(g as Generation, s as Seq);
const blob = (s: string): string => layout.blobKey(dg(s));
const pack = (s: string): string => layout.packKey(dg(s));

describe('planGc', () => {
  it('keeps records newer than the horizon and the newest full at or before it with the deltas after it', () => {
    const p = planGc(bucket([{ g: 1, recs: [
      { seq: 1, kind: 'full', at: 50 }, { seq: 2, at: 40 }, { seq: 3, kind: 'full', at: 30 }, { seq: 4, at: 26 }, { seq: 5, at: 10 },
    ] }]));
    const d = gone(p);
    assert.ok(d.has(rec(1, 1)) && d.has(rec(1, 2)), 'records before the base full go');
    for (const s of [3, 4, 5]) assert.ok(!d.has(rec(1, s)), `seq ${s} stays`);
    assert.ok(d.has(blob('blob-1-1')) && d.has(blob('blob-1-2')), 'their blobs go');
    assert.ok(!d.has(blob('blob-1-3')));
    assert.equal(p.retainedRecords, 3);
    assert.deepEqual(p.problems, []);
  });

  it('a full checkpoint exactly at the horizon is the base; one just after it is not', () => {
    const at = (h: number): Rec[] => [{ seq: 1, kind: 'full', at: 48 }, { seq: 2, at: 30 }, { seq: 3, kind: 'full', at: h }, { seq: 4, at: 1 }];
    const exact = gone(planGc(bucket([{ g: 1, recs: at(24) }])));
    assert.ok(exact.has(rec(1, 1)) && exact.has(rec(1, 2)) && !exact.has(rec(1, 3)));
    const after = gone(planGc(bucket([{ g: 1, recs: at(23.99) }])));
    // The full at 23.99 h is inside the window; the base for the horizon is the full at 48 h.
    assert.ok(!after.has(rec(1, 1)) && !after.has(rec(1, 2)));
  });

  it('a container with only deltas since a full long before the horizon keeps the full and every delta', () => {
    const d = gone(planGc(bucket([{ g: 1, recs: [{ seq: 1, kind: 'full', at: 90 }, { seq: 2, at: 80 }, { seq: 3, at: 70 }, { seq: 4, at: 2 }] }])));
    assert.equal(d.size, 0);
  });

  it('a quiet container keeps its last full and deltas; a busy one loses its old records (per container)', () => {
    const d = gone(planGc(bucket([{ g: 1, recs: [
      { seq: 1, c: 'quiet', kind: 'full', at: 90 }, { seq: 2, c: 'quiet', at: 85 },
      { seq: 3, c: 'busy', kind: 'full', at: 90 }, { seq: 4, c: 'busy', at: 60 }, { seq: 5, c: 'busy', kind: 'full', at: 30 }, { seq: 6, c: 'busy', at: 5 },
    ] }])));
    assert.deepEqual([...d].filter((k) => k.includes('/journal/')).sort(), [rec(1, 3), rec(1, 4)]);
  });

  it('a container without any full at or before the horizon keeps everything', () => {
    const d = gone(planGc(bucket([{ g: 1, recs: [{ seq: 1, at: 90 }, { seq: 2, at: 50 }, { seq: 3, kind: 'full', at: 5 }] }])));
    assert.equal(d.size, 0);
  });

  it('an old generation that ended before the horizon goes whole, its claim stays as the marker', () => {
    const p = planGc(bucket([
      { g: 1, claimedAt: 200, refused: [9], recs: [{ seq: 1, kind: 'full', at: 199 }, { seq: 2, at: 100 }] },
      { g: 2, claimedAt: 48, recs: [{ seq: 1, kind: 'full', at: 47 }, { seq: 2, at: 3 }] },
    ]));
    const d = gone(p);
    for (const k of [rec(1, 1), rec(1, 2), rec(1, 9), layout.headKey(1 as Generation)]) assert.ok(d.has(k), k);
    assert.ok(!d.has(layout.claimKey(1 as Generation)), 'the claim stays');
    assert.ok(!d.has(rec(2, 1)) && !d.has(rec(2, 2)));
    assert.equal(p.totals.generation.objects, 4);
    assert.deepEqual(p.problems, [], 'a refused record of a generation that goes whole is no problem');
  });

  it('an old generation holding the only full checkpoint of a container the newest head names keeps that container\'s chain', () => {
    // db went idle before generation 2: its only full is in generation 1; the newest head (3) still names it.
    const gens: Gen[] = [
      { g: 1, claimedAt: 200, recs: [{ seq: 1, c: 'db', kind: 'full', at: 199 }, { seq: 2, c: 'web', kind: 'full', at: 199 }, { seq: 3, c: 'db', kind: 'full', at: 150 }, { seq: 4, c: 'db', at: 140 }] },
      { g: 2, claimedAt: 100, recs: [{ seq: 1, c: 'web', kind: 'full', at: 99 }] },
      { g: 3, claimedAt: 48, recs: [{ seq: 1, c: 'web', kind: 'full', at: 47 }, { seq: 2, c: 'web', at: 3 }] },
    ];
    const input = bucket(gens);
    const g3 = input.generations[2]!;
    (input.generations as GcGeneration[])[2] = { ...g3, head: { ...g3.head!, containers: { ...g3.head!.containers, db: 0 as Seq } } };
    const p = planGc(input);
    const d = gone(p);
    assert.ok(!d.has(rec(1, 3)) && !d.has(rec(1, 4)), 'db\'s newest full and its delta stay');
    assert.ok(!d.has(blob('blob-1-3')) && !d.has(blob('blob-1-4')));
    assert.ok(!d.has(layout.headKey(1 as Generation)), 'the generation is not deleted whole');
    assert.ok(d.has(rec(1, 1)) && d.has(rec(1, 2)), 'db\'s older full and web\'s records (web has newer fulls) go');
    assert.ok(d.has(rec(2, 1)) && d.has(layout.headKey(2 as Generation)), 'generation 2 (web only, newer full in 3) goes whole');
  });

  it('an old generation goes whole once its containers have newer fulls or are gone from the newest head', () => {
    // db is named by no newest head: gone; web has a full in generation 3.
    const d = gone(planGc(bucket([
      { g: 1, claimedAt: 200, recs: [{ seq: 1, c: 'db', kind: 'full', at: 199 }, { seq: 2, c: 'web', kind: 'full', at: 199 }] },
      { g: 3, claimedAt: 48, recs: [{ seq: 1, c: 'web', kind: 'full', at: 47 }] },
    ])));
    assert.ok(d.has(rec(1, 1)) && d.has(rec(1, 2)) && d.has(layout.headKey(1 as Generation)));
  });

  it('while the newest head names no commit yet (a new primary just opened it), the head before it says who is gone', () => {
    const gens: Gen[] = [
      { g: 1, claimedAt: 200, recs: [{ seq: 1, c: 'db', kind: 'full', at: 199 }, { seq: 2, c: 'app', kind: 'full', at: 199 }] },
      { g: 2, claimedAt: 100, recs: [{ seq: 1, c: 'web', kind: 'full', at: 99 }] },
      { g: 3, claimedAt: 0, recs: [], headSeq: 0 },
    ];
    const input = bucket(gens);
    const g2 = input.generations[1]!;
    (input.generations as GcGeneration[])[1] = { ...g2, head: { ...g2.head!, containers: { ...g2.head!.containers, db: 0 as Seq } } };
    const d = gone(planGc(input));
    assert.ok(!d.has(rec(1, 1)), 'db\'s only full stays: generation 2\'s head names it');
    assert.ok(d.has(rec(1, 2)), 'app, which generation 2\'s head does not name, is gone');
    assert.ok(!d.has(rec(2, 1)), 'web\'s only full (in generation 2, which ended inside the window) stays too');
  });

  it('with no head naming a commit at all, no container counts as gone', () => {
    const d = gone(planGc(bucket([
      { g: 1, claimedAt: 200, recs: [{ seq: 1, c: 'db', kind: 'full', at: 199 }], headSeq: 0 },
      { g: 2, claimedAt: 100, recs: [], headSeq: 0 },
    ])));
    assert.ok(!d.has(rec(1, 1)));
  });

  it('a generation without a claim keeps its head as the marker', () => {
    const d = gone(planGc(bucket([
      { g: 1, recs: [{ seq: 1, kind: 'full', at: 200 }] },
      { g: 2, claimedAt: 48, recs: [{ seq: 1, kind: 'full', at: 47 }] },
    ])));
    assert.ok(d.has(rec(1, 1)) && !d.has(layout.headKey(1 as Generation)));
  });

  it('a generation that ended inside the window keeps what restores its part of it', () => {
    const d = gone(planGc(bucket([
      { g: 1, claimedAt: 200, recs: [{ seq: 1, kind: 'full', at: 199 }, { seq: 2, at: 100 }, { seq: 3, kind: 'full', at: 60 }, { seq: 4, at: 30 }] },
      { g: 2, claimedAt: 10, recs: [{ seq: 1, kind: 'full', at: 9 }] },
    ])));
    assert.ok(d.has(rec(1, 1)) && d.has(rec(1, 2)));
    assert.ok(!d.has(rec(1, 3)) && !d.has(rec(1, 4)) && !d.has(layout.headKey(1 as Generation)));
  });

  it('never deletes the newest generation, however old', () => {
    const d = gone(planGc(bucket([{ g: 5, claimedAt: 500, recs: [{ seq: 1, kind: 'full', at: 499 }] }])));
    assert.equal(d.size, 0);
  });

  it('keeps a record past the head (published, head not yet written)', () => {
    const input = bucket([{ g: 1, recs: [{ seq: 1, kind: 'full', at: 90 }, { seq: 2, kind: 'full', at: 80 }] }]);
    const g0 = input.generations[0]!;
    (input.generations as GcGeneration[])[0] = { ...g0, head: { seq: 0 as Seq, containers: {}, updatedAt: NOW } };
    assert.equal(gone(planGc(input)).size, 0);
  });

  it('packs shared between records stay while one retained record names them', () => {
    const p = planGc(bucket([{ g: 1, recs: [
      { seq: 1, kind: 'full', at: 90, packs: ['A', 'B'] }, { seq: 2, kind: 'full', at: 50, packs: ['B', 'C'] }, { seq: 3, at: 1, packs: ['C'] },
    ] }]));
    const d = gone(p);
    assert.ok(d.has(pack('A')), 'only the expired record names A');
    assert.ok(!d.has(pack('B')) && !d.has(pack('C')));
    assert.ok(d.has(layout.blobKey(dg('list-1-1'))) && !d.has(layout.blobKey(dg('list-1-2'))), 'chunk lists go with their records');
    assert.equal(p.totals.pack.bytes, 1000);
  });

  it('no pack goes while a retained record\'s chunk list cannot be read', () => {
    const p = planGc(bucket([{ g: 1, recs: [{ seq: 1, kind: 'full', at: 90, packs: ['A'] }, { seq: 2, kind: 'full', at: 50, packs: ['B'] }] }], { unreadableLists: ['1/2'] }));
    assert.ok(!gone(p).has(pack('A')));
    assert.ok(gone(p).has(rec(1, 1)));
    assert.match(p.problems.join('\n'), /could not be read: no pack is deleted/);
  });

  it('unreferenced blobs and packs younger than the grace period stay (a commit in flight)', () => {
    const young = NOW - 0.5 * H;
    const p = planGc(bucket([{ g: 1, recs: [{ seq: 1, kind: 'full', at: 2 }] }], { objects: [
      { key: blob('in-flight'), size: 5, lastModified: young }, { key: pack('in-flight'), size: 5, lastModified: young },
      { key: blob('orphan'), size: 5, lastModified: NOW - 1 * H }, { key: pack('orphan'), size: 7, lastModified: NOW - 2 * H },
    ] }));
    const d = gone(p);
    assert.ok(!d.has(blob('in-flight')) && !d.has(pack('in-flight')));
    assert.ok(d.has(blob('orphan')), 'exactly at the grace edge it goes');
    assert.ok(d.has(pack('orphan')));
    assert.deepEqual(p.second.map((x) => x.kind).sort(), ['blob', 'pack']);
  });

  it('refused records are left and reported, their container judged without them', () => {
    const p = planGc(bucket([{ g: 1, refused: [2], recs: [{ seq: 1, kind: 'full', at: 90 }, { seq: 3, kind: 'full', at: 50 }, { seq: 4, at: 1 }] }]));
    const d = gone(p);
    assert.ok(!d.has(rec(1, 2)));
    assert.ok(d.has(rec(1, 1)));
    assert.match(p.problems.join('\n'), /journal\/0000000000000002\.json is refused/);
  });

  it('digests named by specs or unreadable objects are never deleted', () => {
    const p = planGc(bucket([{ g: 1, recs: [{ seq: 1, kind: 'full', at: 1 }] }], { protectedDigests: [dg('image-layer')], objects: [{ key: blob('image-layer'), size: 1, lastModified: 0 }] }));
    assert.ok(!gone(p).has(blob('image-layer')));
  });

  it('divergent tails keep their blobs for the retention, then go', () => {
    const tail = (name: string, h: number): Extract<GcDivergent, { digest: Digest }> => ({ key: layout.divergentKey({ host: 'a', generation: 1 as Generation, container: 'web', digest: dg(name) }), savedAt: NOW - h * H, digest: dg(name) });
    const fresh = tail('fresh', 2);
    const old = tail('old', 30);
    const p = planGc(bucket([{ g: 2, claimedAt: 40, recs: [{ seq: 1, kind: 'full', at: 39 }] }], {
      divergent: [fresh, old, { key: 'tl/pair/divergent/a/1/web/x.json', refused: 'unsigned' }],
      objects: [fresh, old].flatMap((t) => [{ key: t.key, size: 1, lastModified: NOW - 40 * H }, { key: layout.blobKey(t.digest), size: 50, lastModified: NOW - 40 * H }]),
    }));
    const d = gone(p);
    assert.ok(!d.has(fresh.key) && !d.has(blob('fresh')));
    assert.ok(d.has(old.key) && d.has(blob('old')));
    assert.ok(p.first.some((x) => x.key === old.key) && p.second.some((x) => x.key === blob('old')), 'the record in the first phase, the blob in the second');
    assert.match(p.problems.join('\n'), /divergent record .* is refused/);
  });

  it('reports retained records whose blobs are missing and keys outside the layout, and deletes neither', () => {
    const input = bucket([{ g: 1, recs: [{ seq: 1, kind: 'full', at: 1 }] }], { objects: [{ key: 'tl/pair/notes.txt', size: 1, lastModified: 0 }] });
    const p = planGc({ ...input, objects: input.objects.filter((o) => o.key !== blob('blob-1-1')) });
    assert.equal(gone(p).size, 0);
    assert.match(p.problems.join('\n'), /names blob .* not in the bucket/);
    assert.match(p.problems.join('\n'), /1 keys outside the bucket layout/);
  });

  it('a record in the first phase always precedes the blob it names', () => {
    const p = planGc(bucket([{ g: 1, recs: [{ seq: 1, kind: 'full', at: 90 }, { seq: 2, kind: 'full', at: 50 }] }]));
    assert.ok(p.first.every((x) => x.kind !== 'blob' && x.kind !== 'pack'));
    assert.ok(p.second.every((x) => x.kind === 'blob' || x.kind === 'pack'));
    assert.deepEqual(p.second.map((x) => x.key), [blob('blob-1-1')]);
  });

  it('image objects: those a spec names stay, unnamed ones go once older than the grace period, none when a spec was unreadable', () => {
    const image = (name: string, h: number): GcObject => ({ key: layout.imageKey(dg(name)), size: 7, lastModified: NOW - h * H });
    const objects = [image('named', 50), image('unnamed-old', 50), image('unnamed-young', 0.5)];
    const p = planGc(bucket([{ g: 1, recs: [{ seq: 1, kind: 'full', at: 1 }] }], { objects, imagesNamed: [dg('named')] }));
    assert.deepEqual(p.second.filter((x) => x.kind === 'image').map((x) => x.key), [layout.imageKey(dg('unnamed-old'))]);
    assert.deepEqual(p.totals.image, { objects: 1, bytes: 7 });
    assert.doesNotMatch(p.problems.join('\n'), /outside the bucket layout/, 'image keys are in the layout');
    const blind = planGc(bucket([{ g: 1, recs: [{ seq: 1, kind: 'full', at: 1 }] }], { objects, imagesNamed: null }));
    assert.equal(blind.totals.image.objects, 0);
    assert.match(blind.problems.join('\n'), /no image object is deleted/);
  });
});
