// GC safety (issue 12): random interleavings of a writer publishing commits (blob, chunk list and packs, then record
// and head through the real Bucket, as JournalWriter publishes them), a reader that reads the head and fetches everything the retained records
// need, generation changes, divergent tails, abandoned uploads, and GC runs (the real collector, planner and
// executor against s3rver), under a fake clock that moves hours at a time. The reader never finds missing what a
// retained record or a head needs (by its own reading of the retention rule, not the planner's), and once the grace
// period has passed, the bucket holds exactly what is retained. Seeded; the seed is printed on failure
// (TL_GC_SEED=<n> replays one).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { encodeChunkList, type ChunkList } from '../../../src/changeset/index.js';
import {
  asDigest,
  Bucket,
  type CommitRecord,
  runGc,
  type BlobStore,
  type CommitChunks,
  type Digest,
  type Generation,
  type GcReport,
  type ListedObject,
  type Seq,
} from '../../../src/store/index.js';
import { testSignatures } from '../../support/signing.js';
import { testS3Store, withS3, type TestS3 } from '../../support/s3.js';
import { WrappedStore } from './helpers.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const RETENTION = 6 * HOUR;
const GRACE = 1 * HOUR;
const CONTAINERS = ['a', 'b', 'c'];
const STEPS = 120;
const SEEDS = 3;
const FIXED_SEEDS = [1, 2, 3];

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sha = (b: Buffer): Digest => asDigest(createHash('sha256').update(b).digest('hex'));

/** The store's clock is the test's: an object's LastModified is the fake time of its last PUT (s3rver stamps files
 *  with the real clock). Everything else goes to the real store. */
class ClockedStore extends WrappedStore {
  readonly written = new Map<string, number>();
  constructor(inner: BlobStore) {
    super(inner);
    this.afterPut = (key) => void this.written.set(key, clock.now);
  }
  override async *listObjects(prefix: string, startAfter?: string): AsyncIterable<ListedObject> {
    for await (const o of this.inner.listObjects(prefix, startAfter)) yield { ...o, lastModified: this.written.get(o.key) ?? o.lastModified };
  }
}

interface Made { container: string; kind: 'full' | 'delta'; digest: Digest; size: number; chunks?: CommitChunks; packs: string[] }

describe('GC safety: writer, reader and GC interleaved under a fake clock', { timeout: 600_000 }, () => {
  let s3: TestS3;
  let dir = '';
  before(async () => {
    s3 = await withS3();
    dir = await mkdtemp(join(tmpdir(), 'tl-gc-safety-'));
  });
  after(async () => {
    process.stdout.write(`# GC deleted over the fixed seeds: ${JSON.stringify(seen)}\n`);
    await s3?.close();
    await rm(dir, { recursive: true, force: true });
  });

  // Fixed seeds (the coverage check below counts on them) and fresh ones each run.
  const seeds = process.env['TL_GC_SEED'] !== undefined ? [Number(process.env['TL_GC_SEED'])] : [...FIXED_SEEDS, ...Array.from({ length: SEEDS }, () => Math.floor(Math.random() * 2 ** 31))];
  for (const seed of seeds) {
    it(`seed ${seed}`, async (t) => {
      try {
        await scenario(seed, s3, dir);
      } catch (err) {
        t.diagnostic(`replay with TL_GC_SEED=${seed}`);
        throw err;
      }
    });
  }
  it('the scenarios made GC delete records, whole generations, blobs and packs', () => {
    // Runs after the seeds (a suite's tests run in order). One replayed seed need not cover every kind.
    if (seeds.length === 1) return;
    assert.ok(seen.records > 0 && seen.generations > 0 && seen.blobs > 0 && seen.packs > 0, JSON.stringify(seen));
  });
});

type Kept = Map<Generation, Map<Seq, { container: string; digest: Digest; chunks?: CommitChunks | undefined }>>;

/** The test's clock: what GC, the records, claims and tails and the store's LastModified say (S3 signing keeps the
 *  real one: s3rver refuses requests 15 minutes off its clock). */
const clock = { now: Date.parse('2026-12-01T00:00:00Z') };
/** What the GC runs of the fixed seeds deleted and spared: the scenarios must make GC work, not only watch it idle. */
const seen = { records: 0, generations: 0, blobs: 0, packs: 0, divergent: 0, spared: 0 };

async function scenario(seed: number, s3: TestS3, dir: string): Promise<void> {
  const random = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const tick = (ms: number): void => void (clock.now += ms);
  const iso = (): string => new Date(clock.now).toISOString();
  const store = new ClockedStore(testS3Store(s3));
  const bucket = new Bucket(store, { prefix: 'tl/gc', group: `s${seed}`, signatures: testSignatures() });
  const { layout } = bucket;
  let generation = 1 as Generation;
  await bucket.claimGeneration({ version: 1, generation, host: 'w', claimedAt: iso(), from: { generation: 0 as Generation, containers: {} } });
  const claims = new Map<Generation, number>([[generation, clock.now]]);
  // The writer, as JournalWriter publishes (record, then head), with the test's clock in the record.
  let lastSeq = 0;
  let containers: Record<string, Seq> = {};
  /** Each generation's head, by the writer's account. */
  const heads = new Map<Generation, Record<string, Seq>>();
  // As the pusher opens a generation: its head at once, empty.
  const openHead = (): Promise<void> => bucket.writeHead({ version: 1, generation, seq: 0 as Seq, writer: 'w', updatedAt: iso(), containers: {} });
  await openHead();
  const hasFull = new Set<string>();
  let inFlight: Made | null = null;
  let lastPacks: string[] = [];
  const contents: Buffer[] = [];
  const tails: Array<{ key: string; savedAt: number; digest: Digest }> = [];
  /** Every commit published, by the writer's own account: what the oracle judges (never the bucket's listing). */
  const published = new Map<Generation, Array<{ seq: Seq; container: string; kind: string; at: number; digest: Digest; chunks?: CommitChunks | undefined }>>();
  let n = 0;
  const log: string[] = [];
  const fail: (msg: string) => never = (msg) => assert.fail(`${msg}\nseed ${seed}; last steps:\n  ${log.slice(-15).join('\n  ')}`);

  const putFile = async (body: Buffer): Promise<string> => {
    const f = join(dir, `f-${seed}-${n++}`);
    await writeFile(f, body);
    return f;
  };
  const uploadPack = async (body: Buffer): Promise<string> => {
    const d = sha(body);
    // As PackStore uploads a pack: through the gate of GC in this process.
    await bucket.gate.beforeWrite(layout.packKey(d));
    await store.put(layout.packKey(d), body);
    return d;
  };

  /** Uploads a commit's objects (blob, packs, chunk list); its record comes in a later step. */
  const upload = async (): Promise<void> => {
    const container = pick(CONTAINERS);
    const kind = !hasFull.has(`${generation}/${container}`) || random() < 0.35 ? 'full' : 'delta';
    // Now and then the same bytes as an older commit: a blob GC may be deleting right now.
    const body = contents.length > 0 && random() < 0.15 ? pick(contents) : Buffer.from(`${seed}/${n++}/${random()}`.repeat(random() < 0.05 ? 20_000 : 4));
    contents.push(body);
    const f = await putFile(body);
    const digest = sha(body);
    await bucket.uploadBlob(f, digest);
    const made: Made = { container, kind, digest, size: body.length, packs: [] };
    if (random() < 0.4) {
      // A pack of its own, and (as the pusher reuses chunks it knows) one of the previous chunked commit's.
      const fresh = await uploadPack(Buffer.from(`pack ${seed}/${n++}/${random()}`.padEnd(40, '.')));
      const reused = lastPacks.length > 0 && random() < 0.6 ? [pick(lastPacks)] : [];
      const packs = [...new Set([fresh, ...reused])];
      const list: ChunkList = {
        version: 2,
        packs,
        files: [{ path: `f${n}`, size: 10 * packs.length, digest: 'c'.repeat(64), chunks: packs.map((_, i) => [createHash('sha256').update(`chunk ${i} ${n}`).digest('hex'), 10, i, 0, 30] as const) }],
      };
      const stored = encodeChunkList(list);
      const listDigest = sha(stored);
      await bucket.uploadBlob(await putFile(stored), listDigest);
      made.chunks = { digest: listDigest, size: stored.length, files: 1, count: packs.length, bytes: 10 * packs.length };
      made.packs = packs;
      lastPacks = packs;
    }
    inFlight = made;
    log.push(`upload ${container} ${kind} ${digest.slice(0, 8)}${made.packs.length > 0 ? ` packs ${made.packs.map((p) => p.slice(0, 6)).join(',')}` : ''}`);
  };

  const publish = async (): Promise<void> => {
    const c = inFlight;
    if (c === null) return;
    inFlight = null;
    const rec: CommitRecord = {
      version: 1, seq: (lastSeq + 1) as Seq, parentSeq: containers[c.container] ?? (0 as Seq), generation, container: c.container, digest: c.digest, size: c.size, kind: c.kind,
      counts: { files: 1, deletions: 0, bytes: c.size }, firstWriteAt: iso(), publishedAt: iso(), writer: 'w', ...(c.chunks ? { chunks: c.chunks } : {}),
    };
    await bucket.writeRecord(rec);
    lastSeq = rec.seq;
    containers = { ...containers, [c.container]: rec.seq };
    heads.set(generation, containers);
    await bucket.writeHead({ version: 1, generation, seq: rec.seq, writer: 'w', updatedAt: iso(), containers });
    if (c.kind === 'full') hasFull.add(`${generation}/${c.container}`);
    const list = published.get(generation) ?? [];
    list.push({ seq: rec.seq, container: c.container, kind: c.kind, at: Date.parse(rec.publishedAt), digest: c.digest, chunks: c.chunks });
    published.set(generation, list);
    log.push(`publish ${generation}/${rec.seq} ${c.container} ${c.kind}`);
  };

  const promote = async (): Promise<void> => {
    generation = (generation + 1) as Generation;
    await bucket.claimGeneration({ version: 1, generation, host: 'w', claimedAt: iso(), from: { generation: (generation - 1) as Generation, containers: {} } });
    claims.set(generation, clock.now);
    lastSeq = 0;
    containers = {};
    await openHead();
    log.push(`promote to ${generation}`);
  };

  const divergent = async (): Promise<void> => {
    const body = Buffer.from(`tail ${seed}/${n++}/${random()}`);
    const digest = sha(body);
    const savedAt = clock.now;
    const key = await bucket.putDivergent({
      version: 1, host: 'w', generation: Math.max(0, generation - 1) as Generation, claimGeneration: generation, container: pick(CONTAINERS), fromSeq: 0 as Seq, lastShippedSeq: 0 as Seq,
      digest, size: body.length, counts: { files: 1, deletions: 0, bytes: body.length }, savedAt: new Date(savedAt).toISOString(), reason: 'test tail',
    }, await putFile(body));
    tails.push({ key, savedAt, digest });
    log.push(`divergent ${key.slice(-20)}`);
  };

  /** Per the retention rule (read independently of the planner, from the writer's account): the records that must
   *  stay, by generation. */
  const mustKeep = (): Kept => {
    const horizon = clock.now - RETENTION;
    const out: Kept = new Map();
    // Newest first: a container's newest full checkpoint stays in an old generation unless a newer one keeps one of
    // it, or the newest head (once it names a commit) does not name it.
    const covered = new Set<string>();
    const newestHead = [...heads.entries()].sort((a, b) => b[0] - a[0]).find(([, h]) => Object.keys(h).length > 0)?.[1];
    const gone = (c: string): boolean => newestHead !== undefined && newestHead[c] === undefined;
    for (let g = generation; g >= 1; g--) {
      const next = claims.get((g + 1) as Generation);
      const keep = new Map<Seq, { container: string; digest: Digest; chunks?: CommitChunks | undefined }>();
      out.set(g, keep);
      const all = published.get(g) ?? [];
      if (g !== generation && next !== undefined && next <= horizon) {
        for (const container of CONTAINERS) {
          const list = all.filter((r) => r.container === container);
          if (list.length === 0 || covered.has(container) || gone(container)) continue;
          const from = Math.max(0, list.findLastIndex((r) => r.kind === 'full'));
          for (const r of list.slice(from)) keep.set(r.seq, { container, digest: r.digest, chunks: r.chunks });
          covered.add(container);
        }
        continue;
      }
      for (const container of CONTAINERS) {
        if (all.some((r) => r.container === container && r.kind === 'full')) covered.add(container);
        const list = (published.get(g) ?? []).filter((r) => r.container === container);
        const base = list.findLastIndex((r) => r.kind === 'full' && r.at <= horizon);
        list.forEach((r, i) => {
          if (i >= base || r.at > horizon) keep.set(r.seq, { container, digest: r.digest, chunks: r.chunks });
        });
      }
    }
    return out;
  };

  const read = async (): Promise<void> => {
    const head = await bucket.readHead(generation);
    if (head.status !== 'ok') fail(`head of generation ${generation}: ${head.status}`);
    const keep = mustKeep();
    // Every record that must stay is readable, with all it names.
    for (const [g, recs] of keep) {
      for (const [seq, r] of recs) {
        const rec = await bucket.readRecord(g, seq);
        if (rec === null) fail(`record ${g}/${seq} is gone`);
        const f = join(dir, `dl-${seed}-${n++}`);
        await bucket.downloadBlob(r.digest, rec.size, f).catch((err: unknown) => fail(`blob of ${g}/${seq} (${r.container}): ${(err as Error).message}`));
        await rm(f, { force: true });
        if (r.chunks !== undefined) {
          const list = await store.getBuffer(layout.blobKey(r.chunks.digest), r.chunks.size);
          if (list === null) fail(`chunk list of ${g}/${seq} is gone`);
          const { parseChunkList, defaultLimits } = await import('../../../src/changeset/index.js');
          for (const p of (await parseChunkList(list, r.chunks, defaultLimits)).packs) {
            if (!(await store.exists(layout.packKey(asDigest(p))))) fail(`pack ${p.slice(0, 8)} of ${g}/${seq} is gone`);
          }
        }
      }
    }
    // What the head names is among them.
    for (const [c, s] of Object.entries(head.head.containers)) if (!keep.get(generation)?.has(s)) fail(`the head names ${c} at ${s}, which the oracle does not keep`);
    for (const tl of tails) {
      if (tl.savedAt > clock.now - RETENTION && !(await store.exists(layout.blobKey(tl.digest)))) fail(`divergent tail ${tl.key} lost its blob`);
    }
    log.push(`read ok (${[...keep.values()].reduce((a, m) => a + m.size, 0)} records)`);
  };

  const gc = async (quiet = false): Promise<GcReport> => {
    const report = await runGc(bucket, {
      retentionMs: RETENTION, graceMs: GRACE, now: () => clock.now,
      // Between the phases, the writer and reader go on (the records are gone, the blobs not yet).
      betweenPhases: async () => {
        for (let i = quiet ? 0 : Math.floor(random() * 3); i > 0; i--) await pick([upload, publish, read])();
      },
      // As the pusher does: the commit it is shipping goes out before GC's last look.
      beforeSecondPhase: async (deletions) => {
        const doomed = new Set(deletions.map((d) => d.key));
        lastPacks = lastPacks.filter((p) => !doomed.has(layout.packKey(asDigest(p))));
        await publish();
      },
    });
    if (FIXED_SEEDS.includes(seed)) seen.records += report.deleted.record.objects;
    if (FIXED_SEEDS.includes(seed)) seen.generations += report.deleted.generation.objects;
    if (FIXED_SEEDS.includes(seed)) seen.blobs += report.deleted.blob.objects;
    if (FIXED_SEEDS.includes(seed)) seen.packs += report.deleted.pack.objects;
    if (FIXED_SEEDS.includes(seed)) seen.divergent += report.deleted.divergent.objects;
    if (FIXED_SEEDS.includes(seed)) seen.spared += report.spared;
    log.push(`gc: ${JSON.stringify(Object.fromEntries(Object.entries(report.deleted).map(([k, v]) => [k, v.objects])))} spared ${report.spared}`);
    if (report.problems.length > 0) fail(`GC found problems: ${report.problems.join('; ')}`);
    return report;
  };

  for (let step = 0; step < STEPS; step++) {
    const r = random();
    if (r < 0.3) {
      if (inFlight !== null && random() < 0.1) {
        log.push('abandon the commit in flight');
        inFlight = null;
      }
      await upload();
    } else if (r < 0.55) await publish();
    else if (r < 0.7) await read();
    else if (r < 0.82) await gc();
    else if (r < 0.95) {
      const ms = Math.floor(random() * 3 * HOUR);
      tick(ms);
      log.push(`clock +${Math.round(ms / MIN)} min`);
    } else if (r < 0.965) await promote();
    else await divergent();
  }
  await publish();
  await read();

  // Past the grace period with nothing in flight: the bucket holds exactly what is retained.
  tick(GRACE + MIN);
  await gc(true);
  await read();
  const keep = mustKeep();
  const want = new Set<string>();
  const horizon = clock.now - RETENTION;
  for (let g = 1; g <= generation; g++) {
    const gg = g as Generation;
    want.add(layout.claimKey(gg));
    const recs = keep.get(gg)!;
    if (g === generation || recs.size > 0) want.add(layout.headKey(gg));
    for (const [seq, r] of recs) {
      want.add(layout.journalKey(gg, seq));
      want.add(layout.blobKey(r.digest));
      if (r.chunks !== undefined) {
        want.add(layout.blobKey(r.chunks.digest));
        const { parseChunkList, defaultLimits } = await import('../../../src/changeset/index.js');
        const list = await store.getBuffer(layout.blobKey(r.chunks.digest), r.chunks.size);
        for (const p of (await parseChunkList(list!, r.chunks, defaultLimits)).packs) want.add(layout.packKey(asDigest(p)));
      }
    }
  }
  for (const tl of tails) {
    if (tl.savedAt > horizon) {
      want.add(tl.key);
      want.add(layout.blobKey(tl.digest));
    }
  }
  const have = new Set<string>();
  for await (const o of store.listObjects(`${layout.base}/`)) have.add(o.key);
  const extra = [...have].filter((k) => !want.has(k));
  const missing = [...want].filter((k) => !have.has(k));
  if (extra.length > 0 || missing.length > 0) fail(`after the grace period: ${extra.length} objects left over (${extra.slice(0, 4).join(', ')}), ${missing.length} missing (${missing.slice(0, 4).join(', ')})`);
}

