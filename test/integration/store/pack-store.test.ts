// The pack store against a local-directory BlobStore (the same seam as S3): a build's new chunks go into packs of
// about packBytes, each chunk once however many builds add it; a restarted store knows the packs from its cache with
// one HEAD a pack; a ranged read is checked chunk by chunk (stored bytes, inflated length, sha256) before it lands.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { appendFile, mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { coalesce, placeChunks, type ChunkedFile, type PackRange } from '../../../src/changeset/index.js';
import { asDigest, BlobDigestMismatchError, BlobMissingError, DirBlobStore, KeyLayout, PackStore, type BodyObserver } from '../../../src/store/index.js';
import { WrappedStore } from './helpers.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const layout = new KeyLayout('twinlayer', 'g');

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'tl-pack-store-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** One file made of `chunks`, as the chunker would list it. */
function fileOf(chunks: Buffer[], path = 'f'): ChunkedFile {
  const whole = Buffer.concat(chunks);
  return { path, size: whole.length, digest: sha(whole), chunks: chunks.map((c) => [sha(c), c.length] as const) };
}

/** A build: every chunk the sink does not know is added; returns the places. */
async function build(ps: PackStore, dir: string, chunks: Buffer[]): Promise<Map<string, { pack: string; offset: number; stored: number }>> {
  await mkdir(dir, { recursive: true });
  const sink = ps.openSink();
  for (const c of chunks) if (!(await sink.known(sha(c)))) await sink.add(sha(c), [c]);
  return sink.finish([fileOf(chunks)]);
}

describe('pack store', () => {
  it('keys parse back; only the exact layout is a pack key', () => {
    const d = asDigest('ab'.repeat(32));
    assert.equal(layout.packKey(d), `twinlayer/g/packs/sha256/ab/${d}`);
    assert.equal(layout.parsePackKey(layout.packKey(d)), d);
    assert.equal(layout.parsePackKey(`twinlayer/g/packs/sha256/cd/${d}`), null);
    assert.equal(layout.parsePackKey(`twinlayer/g/packs/sha256/ab/${d}x`), null);
  });

  it('new chunks go into packs of about packBytes, each a run of gzip members; the same chunks again cost nothing', async () => {
    await withDir(async (dir) => {
      const store = new WrappedStore(new DirBlobStore(join(dir, 'bucket')));
      const ps = new PackStore(store, layout, { packBytes: 64 * 1024, concurrency: 2 });
      const chunks = Array.from({ length: 40 }, () => randomBytes(10_000));
      const places = await build(ps, join(dir, 'b1'), [...chunks, chunks[0]!]);
      const packs = new Set([...places.values()].map((p) => p.pack));
      assert.equal(ps.stats.uploaded, 40, 'a chunk named twice is stored once');
      assert.equal(packs.size, store.puts.length);
      assert.ok(packs.size >= 6 && packs.size <= 7, `40 chunks of 10 kB in packs of 64 KiB: ${packs.size}`);
      // A whole pack inflates to its chunks back to back (one gzip member each); each place inflates alone.
      for (const pack of packs) {
        const bytes = await store.inner.getBuffer(layout.packKey(asDigest(pack)), 1 << 20);
        assert.ok(bytes !== null);
        assert.equal(sha(bytes), pack, 'a pack is named by its sha256');
        const inPack = chunks.filter((c) => places.get(sha(c))?.pack === pack).sort((a, b) => places.get(sha(a))!.offset - places.get(sha(b))!.offset);
        assert.deepEqual(gunzipSync(bytes), Buffer.concat(inPack));
        for (const c of inPack) {
          const p = places.get(sha(c))!;
          assert.deepEqual(gunzipSync(bytes.subarray(p.offset, p.offset + p.stored)), c);
        }
      }
      await build(ps, join(dir, 'b2'), chunks);
      assert.equal(store.puts.length, packs.size, 'known chunks are not sent again');
    });
  });

  it('chunks in parts, stored and deflated ones mixed, read back whole and one by one through gunzip and fetchRange', async () => {
    await withDir(async (dir) => {
      const store = new WrappedStore(new DirBlobStore(join(dir, 'bucket')));
      const ps = new PackStore(store, layout, { packBytes: 256 * 1024 });
      // Random (framed as they are), text (deflated), one larger than a stored block, one empty, and last one larger
      // than the chunker ever cuts (the pack's buffer, sized for packBytes plus one chunk, grows for it).
      const chunks = [randomBytes(70_000), Buffer.alloc(50_000, 'log line\n'), randomBytes(3), Buffer.alloc(0), randomBytes(140_000), randomBytes(1_100_000)];
      const sink = ps.openSink();
      // Each chunk in three parts, as the chunker hands over a chunk that spans reads.
      for (const c of chunks) await sink.add(sha(c), [c.subarray(0, 1), c.subarray(1, c.length >> 1), c.subarray(c.length >> 1)]);
      const places = await sink.finish([fileOf(chunks)]);
      const pack = places.get(sha(chunks[0]!))!.pack;
      const bytes = (await store.inner.getBuffer(layout.packKey(asDigest(pack)), 4 << 20))!;
      assert.equal(sha(bytes), pack, 'a pack is named by its sha256');
      assert.deepEqual(gunzipSync(bytes), Buffer.concat(chunks));
      assert.ok(places.get(sha(chunks[1]!))!.stored < 5_000, 'text is deflated');
      assert.equal(new Set([...places.values()].map((p) => p.pack)).size, 1, 'one pack');
      for (const c of chunks) {
        const p = places.get(sha(c))!;
        assert.deepEqual(gunzipSync(bytes.subarray(p.offset, p.offset + p.stored)), c);
        const file = join(dir, `range-${sha(c)}`);
        const got = await ps.fetchRange({ pack, start: p.offset, length: p.stored, entries: [{ digest: sha(c), size: c.length, offset: p.offset, stored: p.stored }] }, file);
        assert.equal(got.status, 'ok');
        assert.deepEqual(await readFile(file), c);
      }
    });
  });

  it('packs go up several at once; one PUT failing fails the build after the others ended, and the next build sends its chunks again', async () => {
    await withDir(async (dir) => {
      const store = new WrappedStore(new DirBlobStore(join(dir, 'bucket')));
      const ps = new PackStore(store, layout, { packBytes: 16 * 1024, concurrency: 3 });
      let inFlight = 0;
      let most = 0;
      let n = 0;
      let failed: string | null = null;
      // In flight from the PUT's start until it failed or the bytes are in the bucket.
      store.beforePut = async (key) => {
        most = Math.max(most, ++inFlight);
        await new Promise((r) => setTimeout(r, 20));
        if (++n === 2) {
          failed = key;
          inFlight--;
          throw new Error('injected: PUT refused');
        }
      };
      store.afterPut = () => void inFlight--;
      const chunks = Array.from({ length: 24 }, () => randomBytes(6_000));
      const sink = ps.openSink();
      // As the replicator: the failure reaches the build at an add once the PUT failed (or at finish), and the build's
      // sink is abandoned, which waits for the uploads still in flight.
      const outcome = await (async () => {
        for (const c of chunks) await sink.add(sha(c), [c]);
        return sink.finish([fileOf(chunks)]);
      })().then(() => null, async (err: unknown) => {
        await sink.abandon();
        return err;
      });
      assert.match(String(outcome), /injected: PUT refused/);
      assert.ok(most >= 2, `${most} pack uploads at once`);
      assert.ok(failed !== null);
      assert.equal(inFlight, 0, 'no upload left running once the build is abandoned');
      assert.equal(await store.exists(failed), false, 'the refused pack is not in the bucket');
      store.beforePut = undefined;
      const places = await build(ps, join(dir, 'again'), chunks);
      for (const c of chunks) {
        const p = places.get(sha(c))!;
        assert.ok(await store.exists(layout.packKey(asDigest(p.pack))), 'every place names a pack in the bucket (the refused one sent again)');
      }
    });
  });

  it('two builds adding the same chunks at once store them once; the second waits for the first', async () => {
    await withDir(async (dir) => {
      const store = new WrappedStore(new DirBlobStore(join(dir, 'bucket')));
      const ps = new PackStore(store, layout, { packBytes: 32 * 1024 });
      const chunks = Array.from({ length: 12 }, () => randomBytes(8_000));
      const [a, b] = await Promise.all([build(ps, join(dir, 'a'), chunks), build(ps, join(dir, 'b'), chunks)]);
      assert.equal(ps.stats.uploaded, 12);
      for (const c of chunks) assert.deepEqual(a.get(sha(c)), b.get(sha(c)));
    });
  });

  it('many builds at once, sharing chunks: every one finishes, with no more packs in memory than allowed', async () => {
    await withDir(async (dir) => {
      const store = new WrappedStore(new DirBlobStore(join(dir, 'bucket')));
      const ps = new PackStore(store, layout, { packBytes: 16 * 1024, concurrency: 1, maxPacksInMemory: 2 });
      const shared = Array.from({ length: 10 }, () => randomBytes(6000));
      const builds = Array.from({ length: 6 }, (_, i) => {
        const own = Array.from({ length: 8 }, () => randomBytes(6000));
        // Interleaved so that each build waits for chunks another one is packing.
        return build(ps, join(dir, `b${i}`), i % 2 === 0 ? [...shared, ...own] : [...own, ...shared.slice().reverse()]);
      });
      const places = await Promise.all(builds);
      assert.equal(ps.stats.uploaded, 10 + 6 * 8, 'each chunk stored once');
      assert.ok(ps.stats.peakPacksInMemory <= 2, `${ps.stats.peakPacksInMemory} packs in memory at once`);
      for (const c of shared) assert.deepEqual(new Set(places.map((p) => JSON.stringify(p.get(sha(c))))).size, 1);
    });
  });

  it('a restarted store knows the packs from its cache with one HEAD a pack; a pack the bucket lost is packed again', async () => {
    await withDir(async (dir) => {
      const store = new WrappedStore(new DirBlobStore(join(dir, 'bucket')));
      const cacheFile = join(dir, 'state', 'packs.jsonl');
      const first = new PackStore(store, layout, { packBytes: 32 * 1024, cacheFile });
      const chunks = Array.from({ length: 20 }, () => randomBytes(8_000));
      const places = await build(first, join(dir, 'a'), chunks);
      const packs = [...new Set([...places.values()].map((p) => p.pack))];
      const puts = store.puts.length;
      const second = new PackStore(store, layout, { packBytes: 32 * 1024, cacheFile });
      assert.deepEqual(await build(second, join(dir, 'b'), chunks), places);
      assert.equal(store.puts.length, puts, 'nothing sent again');
      assert.equal(second.stats.heads, packs.length, 'one HEAD a pack');
      assert.equal(second.stats.skipped, chunks.length, 'every chunk counted as held by the bucket');
      await store.delete(layout.packKey(asDigest(packs[0]!)));
      // A torn last line (a crash while appending) is skipped, and the cache is rewritten without it.
      await appendFile(cacheFile, '{"pack":"ab');
      const third = new PackStore(store, layout, { packBytes: 32 * 1024, cacheFile });
      const again = await build(third, join(dir, 'c'), chunks);
      const lost = chunks.filter((c) => places.get(sha(c))?.pack === packs[0]);
      assert.equal(third.stats.uploaded, lost.length, 'only the chunks of the lost pack are sent');
      assert.equal(third.stats.skipped, chunks.length - lost.length, 'the others counted as held');
      for (const c of chunks) assert.ok(await store.exists(layout.packKey(asDigest(again.get(sha(c))!.pack))));
      assert.ok(!(await readFile(cacheFile, 'utf8')).includes('{"pack":"ab\n'), 'the torn line is gone');
    });
  });

  it('the cache file stays bounded: past twice what is remembered it is rewritten with what is remembered', async () => {
    await withDir(async (dir) => {
      const cacheFile = join(dir, 'state', 'packs.jsonl');
      const ps = new PackStore(new DirBlobStore(join(dir, 'bucket')), layout, { packBytes: 8 * 1024, cacheFile, maxKnown: 10 });
      for (let i = 0; i < 6; i++) await build(ps, join(dir, `b${i}`), Array.from({ length: 8 }, () => randomBytes(4000)));
      const entries = (await readFile(cacheFile, 'utf8')).split('\n').filter((l) => l !== '').reduce((n, l) => n + (JSON.parse(l) as { chunks: unknown[] }).chunks.length, 0);
      assert.equal(ps.size, 10);
      assert.ok(entries <= 20, `the cache file names ${entries} chunks for 10 remembered`);
    });
  });

  it('an abandoned build fails the builds waiting for its chunks; they upload them next time', async () => {
    await withDir(async (dir) => {
      const ps = new PackStore(new DirBlobStore(join(dir, 'bucket')), layout, { packBytes: 1 << 20 });
      const chunks = [randomBytes(5000), randomBytes(5000)];
      await mkdir(join(dir, 'a'));
      await mkdir(join(dir, 'b'));
      const a = ps.openSink();
      for (const c of chunks) await a.add(sha(c), [c]);
      const b = ps.openSink();
      assert.equal(await b.known(sha(chunks[0]!)), true, 'a chunk another build is uploading counts as known');
      const waiting = b.finish([fileOf(chunks)]);
      await a.abandon();
      await assert.rejects(waiting, /was not uploaded|neither uploaded nor known/);
      assert.equal(await ps.known(sha(chunks[0]!)), false);
      assert.equal((await build(ps, join(dir, 'c'), chunks)).size, 2);
    });
  });

  it('fetchRange checks every chunk and refuses what does not match, is missing, or ends before the range', async () => {
    await withDir(async (dir) => {
      const inner = new DirBlobStore(join(dir, 'bucket'));
      const ps = new PackStore(inner, layout, { retries: 2 });
      const chunks = Array.from({ length: 5 }, () => randomBytes(3000));
      const places = await build(ps, join(dir, 'b'), chunks);
      const list = placeChunks([fileOf(chunks)], (d) => places.get(d));
      const entries = list.files[0]!.chunks.map(([digest, size, , offset, stored]) => ({ digest, size, offset, stored }));
      const pack = list.packs[0]!;
      const [range] = coalesce(pack, entries, 0, 1 << 20);
      assert.ok(range !== undefined && range.entries.length === 5, 'neighbours make one range');
      assert.deepEqual(await ps.fetchRange(range, join(dir, 'out')), { status: 'ok' });
      assert.deepEqual(await readFile(join(dir, 'out')), Buffer.concat(chunks));
      // Bytes that come in small pieces, a request started again halfway, and gaps between the chunks asked for.
      const pieces = new Proxy(inner, {
        get: (target, prop, receiver) => prop !== 'observeRange' ? Reflect.get(target, prop, receiver) as unknown
          : async (key: string, start: number, length: number, observe: BodyObserver) => {
            const whole = (await inner.getBuffer(key, 1 << 20))!.subarray(start, start + length);
            for (const upTo of [Math.floor(length / 2), length]) {
              observe.start();
              for (let at = 0; at < upTo; at += 777) await observe.chunk(whole.subarray(at, Math.min(upTo, at + 777)));
            }
            return { status: 'ok', objectSize: null };
          },
      });
      const [gappy] = coalesce(pack, [entries[0]!, entries[2]!, entries[4]!], 1 << 20, 1 << 20);
      assert.ok(gappy !== undefined && gappy.entries.length === 3, 'one range over the gaps');
      assert.deepEqual(await new PackStore(pieces, layout).fetchRange(gappy, join(dir, 'gappy')), { status: 'ok' });
      assert.deepEqual(await readFile(join(dir, 'gappy')), Buffer.concat([chunks[0]!, chunks[2]!, chunks[4]!]));
      await rm(join(dir, 'gappy'));
      const elsewhere: PackRange = { ...range, pack: sha(Buffer.from('none')) };
      await assert.rejects(ps.fetchRange(elsewhere, join(dir, 'missing')), BlobMissingError);
      const packSize = range.start + range.length;
      assert.deepEqual(await ps.fetchRange({ ...range, start: packSize, length: 10, entries: [{ ...entries[0]!, offset: packSize, stored: 10 }] }, join(dir, 'short')), { status: 'short', packSize });
      // The pack under the key holds other bytes, a bomb at a chunk's place, or a chunk of another length.
      const original = (await inner.getBuffer(layout.packKey(asDigest(pack)), 1 << 20))!;
      const bomb = gzipSync(Buffer.alloc(50 * 1024 * 1024));
      const longer = gzipSync(Buffer.concat([chunks[0]!, Buffer.from('x')]));
      const cases: Array<[string, Buffer]> = [['other bytes', randomBytes(original.length)], ['a bomb', bomb], ['a chunk one byte longer', longer]];
      for (const [what, body] of cases) {
        await inner.put(layout.packKey(asDigest(pack)), body);
        const stored = what === 'other bytes' ? entries[0]!.stored : body.length;
        await assert.rejects(ps.fetchRange({ pack, start: 0, length: stored, entries: [{ ...entries[0]!, offset: 0, stored }] }, join(dir, 'bad')), BlobDigestMismatchError, what);
        await assert.rejects(readFile(join(dir, 'bad')), /ENOENT/);
      }
      assert.deepEqual((await readdir(dir)).sort(), ['b', 'bucket', 'out'], 'no temp file is left');
    });
  });
});
