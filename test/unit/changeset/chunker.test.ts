// FastCDC boundaries are part of the bucket format: a chunk's key is its digest, and a standby reuses the chunks it
// holds. These vectors pin them; a change here means every stored chunk stops matching (bump the format instead).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { avgChunkBytes, Chunker, gear, maxChunkBytes, minChunkBytes } from '../../../src/changeset/chunker.js';

/** xorshift32 from `seed`, little-endian words: the same bytes on every host. */
function prng(seed: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  let x = seed >>> 0;
  for (let i = 0; i < size; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b.writeUInt32LE(x, i);
  }
  return b;
}

async function cutPoints(data: Buffer, feed: number): Promise<{ cuts: number[]; digests: string[] }> {
  const c = new Chunker();
  for (let i = 0; i < data.length; i += feed) await c.update(data.subarray(i, i + feed));
  const chunks = await c.end();
  let off = 0;
  const cuts = chunks.map((k) => (off += k.size));
  return { cuts, digests: chunks.map((k) => k.digest) };
}

const vector = prng(0x9e3779b9, 4 * 1024 * 1024);
const expectedCuts = [
  234319, 285968, 448572, 610184, 741269, 925399, 1056587, 1116785, 1271183, 1449661, 1581240, 1722356, 1816951, 2000167,
  2188029, 2302121, 2501457, 2643844, 2783057, 2936624, 3120056, 3240655, 3427269, 3559002, 3709093, 3844019, 4060005,
  4157720, 4194304,
];

describe('chunker (FastCDC)', () => {
  it('the gear table is what its comment says it is', () => {
    assert.equal(gear.length, 256);
    for (let i = 0; i < 256; i++) {
      assert.equal(gear[i], createHash('sha256').update(`twinlayer fastcdc gear ${i}`).digest().readUInt32BE(0), `gear[${i}]`);
    }
    assert.deepEqual([minChunkBytes, avgChunkBytes, maxChunkBytes], [32768, 131072, 524288]);
  });

  it('cuts the fixed vector at the pinned points, with the pinned digests', async () => {
    const { cuts, digests } = await cutPoints(vector, 1 << 20);
    assert.deepEqual(cuts, expectedCuts);
    assert.equal(digests[0], '80e88c93bf6e9aa1c4f9b1e0d3ca84173a1193cf2e7f6e9c77a529f2267fa3f6');
    assert.equal(digests[1], '84627e9c9352fd4e0281ae0ae774258f5f1756afbe6e504204b1a7a47843bf89');
    for (const [i, d] of digests.entries()) {
      const start = i === 0 ? 0 : expectedCuts[i - 1]!;
      assert.equal(d, createHash('sha256').update(vector.subarray(start, expectedCuts[i])).digest('hex'));
    }
  });

  it('finds the same cut points however the stream is fed (reads of any size, a restart between files)', async () => {
    for (const feed of [7, 4096, 65_537, 524_288, vector.length]) {
      const input = feed === 7 ? vector.subarray(0, 600_000) : vector;
      const { cuts } = await cutPoints(input, feed);
      assert.deepEqual(cuts, feed === 7 ? expectedCuts.filter((c) => c < 600_000).concat(600_000) : expectedCuts, `feed ${feed}`);
    }
  });

  it('hands the bytes of each chunk to its consumer intact when the caller reuses one read buffer', async () => {
    const seen: string[] = [];
    const c = new Chunker((chunk, parts) => {
      seen.push(createHash('sha256').update(Buffer.concat(parts)).digest('hex'));
      assert.equal(Buffer.concat(parts).length, chunk.size);
    });
    const buf = Buffer.alloc(100_000);
    for (let i = 0; i < vector.length; i += buf.length) {
      const n = vector.copy(buf, 0, i, i + buf.length);
      await c.update(buf.subarray(0, n));
      buf.fill(0xee);
    }
    const chunks = await c.end();
    assert.deepEqual(seen, chunks.map((k) => k.digest));
  });

  it('keeps every chunk within the bounds; data without cut points is cut at the maximum', async () => {
    const { cuts } = await cutPoints(Buffer.alloc(2 * 1024 * 1024), 1 << 20);
    assert.deepEqual(cuts, [524288, 1048576, 1572864, 2097152]);
    let prev = 0;
    for (const c of expectedCuts.slice(0, -1)) {
      assert.ok(c - prev >= minChunkBytes && c - prev <= maxChunkBytes, `chunk of ${c - prev}`);
      prev = c;
    }
  });

  it('an edit in the middle changes only the chunks around it; an append only the tail', async () => {
    const edited = Buffer.from(vector);
    edited.fill(0x41, 2_000_000, 2_004_096);
    const before = await cutPoints(vector, 1 << 20);
    const after = await cutPoints(edited, 1 << 20);
    const changed = after.digests.filter((d) => !before.digests.includes(d));
    assert.ok(changed.length >= 1 && changed.length <= 2, `${changed.length} chunks changed`);
    const appended = await cutPoints(Buffer.concat([vector, prng(7, 5000)]), 1 << 20);
    const newOnes = appended.digests.filter((d) => !before.digests.includes(d));
    assert.equal(newOnes.length, 1);
  });
});
