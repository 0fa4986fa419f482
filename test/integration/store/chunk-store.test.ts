// The chunk store against a local-directory BlobStore (the same seam as S3): a chunk is sent once, a commit of new
// data stops HEADing after its first few chunks, a chunk the bucket holds is never sent again, and a fetched chunk
// is checked (size of the stored object, inflated length, sha256) before it lands.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { asDigest, BlobDigestMismatchError, BlobMissingError, ChunkStore, DirBlobStore, KeyLayout } from '../../../src/store/index.js';
import { WrappedStore } from './helpers.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'tl-chunk-store-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function spoolOf(dir: string, chunks: Buffer[]): Promise<Map<string, string>> {
  const spool = new Map<string, string>();
  for (const c of chunks) {
    const f = join(dir, sha(c));
    await writeFile(f, c);
    spool.set(sha(c), f);
  }
  return spool;
}

describe('chunk store', () => {
  const layout = new KeyLayout('twinlayer', 'g');

  it('keys parse back; only the exact layout is a chunk key', () => {
    const d = asDigest('ab'.repeat(32));
    assert.equal(layout.chunkKey(d), `twinlayer/g/chunks/sha256/ab/${d}`);
    assert.equal(layout.parseChunkKey(layout.chunkKey(d)), d);
    assert.equal(layout.parseChunkKey(`twinlayer/g/chunks/sha256/cd/${d}`), null);
    assert.equal(layout.parseChunkKey(`twinlayer/g/chunks/sha256/ab/${d}x`), null);
  });

  it('new data: 8 HEADs, then PUTs only; the same chunks again: nothing; another process finds them with HEADs', async () => {
    await withDir(async (dir) => {
      const store = new WrappedStore(new DirBlobStore(join(dir, 'bucket')));
      const cs = new ChunkStore(store, layout, { concurrency: 4 });
      const spool = await spoolOf(dir, Array.from({ length: 40 }, () => randomBytes(3000)));
      await cs.ensureAll(spool);
      assert.equal(cs.stats.heads, 8);
      assert.equal(cs.stats.uploaded, 40);
      await cs.ensureAll(spool);
      assert.equal(store.puts.length, 40, 'known chunks are not sent again');
      const other = new ChunkStore(store, layout);
      await other.ensureAll(spool);
      assert.equal(other.stats.uploaded, 0);
      assert.equal(other.stats.heads, 40, 'chunks found in the bucket keep the HEADs going');
    });
  });

  it('fetch checks the chunk and refuses what does not match, is missing, or is larger than a chunk can be', async () => {
    await withDir(async (dir) => {
      const inner = new DirBlobStore(join(dir, 'bucket'));
      const cs = new ChunkStore(inner, layout, { retries: 2 });
      const good = randomBytes(5000);
      const d = sha(good);
      await cs.ensure(d, (await spoolOf(dir, [good])).get(d)!);
      await cs.fetch(d, good.length, join(dir, 'out'));
      assert.deepEqual(await readFile(join(dir, 'out')), good);
      await assert.rejects(cs.fetch(sha(randomBytes(10)), 10, join(dir, 'missing')), BlobMissingError);
      // The object under the key holds other bytes, a bomb, or more than any chunk of that size stores to.
      const victim = asDigest(sha(randomBytes(100)));
      for (const body of [gzipSync(randomBytes(100)), gzipSync(Buffer.alloc(50 * 1024 * 1024)), randomBytes(10_000)]) {
        await inner.put(layout.chunkKey(victim), body);
        await assert.rejects(cs.fetch(victim, 100, join(dir, 'bad')), BlobDigestMismatchError);
        await assert.rejects(readFile(join(dir, 'bad')), /ENOENT/);
      }
    });
  });
});
