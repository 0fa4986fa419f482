// The chunk list is untrusted input on the standby: its totals are bounded before it is fetched, and it is held to
// them, and to itself (sizes, places in packs), while it is parsed.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import {
  ChangesetRejectedError, chunkListProblem, defaultLimits, encodeChunkList, parseChunkList, summarize, type ChunkList, type ChunkListDeclared,
} from '../../../src/changeset/index.js';

const d = (n: number): string => n.toString(16).padStart(64, '0');
const P1 = d(0xaa);
const P2 = d(0xbb);
const good: ChunkList = {
  version: 2,
  packs: [P1, P2],
  files: [
    { path: 'a/big', size: 300, digest: d(1), chunks: [[d(2), 100, 0, 0, 130], [d(3), 200, 1, 0, 230]] },
    { path: 'b', size: 100, digest: d(4), chunks: [[d(2), 100, 0, 0, 130]] },
  ],
};

function declaredOf(stored: Buffer, list: ChunkList): ChunkListDeclared {
  return { size: stored.length, ...summarize(list) };
}

async function refused(list: unknown, declared?: Partial<ChunkListDeclared>, match?: RegExp): Promise<void> {
  const stored = gzipSync(Buffer.from(JSON.stringify(list)));
  const base = { size: stored.length, files: 2, count: 3, bytes: 400 };
  await assert.rejects(parseChunkList(stored, { ...base, ...declared }, defaultLimits), (err: unknown) => {
    assert.ok(err instanceof ChangesetRejectedError, String(err));
    if (match) assert.match(err.message, match);
    return true;
  });
}

describe('chunk list', () => {
  it('round-trips, one chunk a line, deterministically', async () => {
    const stored = encodeChunkList(good);
    assert.deepEqual(stored, encodeChunkList(good));
    assert.deepEqual(await parseChunkList(stored, declaredOf(stored, good), defaultLimits), good);
  });

  it('refuses totals past the limits before anything is fetched', () => {
    assert.match(chunkListProblem({ size: 100, files: 1, count: 1_000_000, bytes: 1 }, defaultLimits) ?? '', /1000000 chunks/);
    assert.match(chunkListProblem({ size: 100, files: 1, count: 10, bytes: 17 * 1024 ** 3 }, defaultLimits) ?? '', /bytes of chunked files/);
    assert.match(chunkListProblem({ size: 10 ** 9, files: 1, count: 1, bytes: 1 }, defaultLimits) ?? '', /chunk list of/);
    assert.match(chunkListProblem({ size: 100, files: 1, count: 2, bytes: 3 * 1024 * 1024 }, defaultLimits) ?? '', /in 2 chunks of at most/);
    assert.equal(chunkListProblem({ size: 100, files: 2, count: 3, bytes: 400 }, defaultLimits), null);
  });

  it('refuses a list whose sizes do not add up', async () => {
    await refused({ ...good, files: [{ ...good.files[0], size: 301 }, good.files[1]] }, { bytes: 401 }, /add up to 300 bytes, the file has 301/);
  });

  it('refuses a chunk reused with a different length, or placed at two places', async () => {
    await refused({ ...good, files: [good.files[0], { path: 'b', size: 101, digest: d(4), chunks: [[d(2), 101, 0, 0, 130]] }] }, { bytes: 401 }, /lengths 100 and 101/);
    await refused({ ...good, files: [good.files[0], { path: 'b', size: 100, digest: d(4), chunks: [[d(2), 100, 0, 500, 130]] }] }, {}, /placed at two places/);
  });

  it('refuses a list that names more chunks than its record declares, or than the limit', async () => {
    const many = { version: 2, packs: [P1], files: [{ path: 'x', size: 5000, digest: d(1), chunks: Array.from({ length: 5000 }, (_, i) => [d(i + 10), 1, 0, i * 100, 100]) }] };
    await refused(many, { files: 1, count: 3, bytes: 5000 }, /more chunks than the 3/);
    await refused(good, { count: 2 }, /more chunks than the 2/);
  });

  it('a list of a million chunks is refused before it is fetched, and while it is parsed against its record', async () => {
    assert.match(chunkListProblem({ size: 100, files: 1, count: 1_000_000, bytes: 1_000_000 }, defaultLimits) ?? '', /1000000 chunks; the limit is 524288/);
    // Declared within the limits, the list itself names a million (110 MB of JSON): cut off while it is inflated.
    const lines = Array.from({ length: 1_000_000 }, (_, i) => `["${d(i + 10)}",1,0,${i * 30},30]`);
    const million = gzipSync(Buffer.from(`{"version":2,"packs":["${P1}"],"files":[{"path":"x","size":1000000,"digest":"${d(1)}","chunks":[${lines.join(',\n')}]}]}`), { level: 1 });
    await assert.rejects(parseChunkList(million, { size: million.length, files: 1, count: 3, bytes: 1_000_000 }, defaultLimits), /not a gzip stream of at most 67108864 bytes/);
  });

  it('refuses places outside a pack: an unnamed pack, offsets past the largest pack, stored lengths no chunk can have', async () => {
    const with0 = (c: readonly [string, number, number, number, number]): unknown => ({ ...good, files: [{ ...good.files[0], chunks: [c, good.files[0]!.chunks[1]] }, good.files[1]] });
    await refused(with0([d(2), 100, 2, 0, 130]), {}, /is in pack 2; the list names 2/);
    await refused(with0([d(2), 100, 0, defaultLimits.maxPackBytes, 130]), {}, /packs hold at most/);
    await refused(with0([d(2), 100, 0, Number.MAX_SAFE_INTEGER, 130]), {}, /packs hold at most/);
    await refused(with0([d(2), 100, 0, 0, 2000]), {}, /stored in 2000; at most/);
    await refused(with0([d(2), 100, 0, -1, 130]), {}, /does not parse/);
    await refused(with0([d(2), 100, 0, 0, 0]), {}, /does not parse/);
    await refused(with0([d(2), 100, -1, 0, 130]), {}, /does not parse/);
    await refused(with0([d(2), 100, 0.5, 0, 130]), {}, /does not parse/);
  });

  it('refuses chunks that overlap in a pack, packs named twice or never used', async () => {
    const overlapping = { version: 2, packs: [P1], files: [{ path: 'x', size: 300, digest: d(1), chunks: [[d(2), 100, 0, 0, 130], [d(3), 200, 0, 129, 230]] }] };
    await refused(overlapping, { files: 1, count: 2, bytes: 300 }, /overlap in pack/);
    const same = { version: 2, packs: [P1], files: [{ path: 'x', size: 300, digest: d(1), chunks: [[d(2), 100, 0, 500, 130], [d(3), 200, 0, 500, 230]] }] };
    await refused(same, { files: 1, count: 2, bytes: 300 }, /overlap in pack/);
    const adjacent = { version: 2, packs: [P1], files: [{ path: 'x', size: 300, digest: d(1), chunks: [[d(2), 100, 0, 230, 130], [d(3), 200, 0, 0, 230]] }] };
    const stored = gzipSync(Buffer.from(JSON.stringify(adjacent)));
    assert.equal((await parseChunkList(stored, { size: stored.length, files: 1, count: 2, bytes: 300 }, defaultLimits)).files.length, 1, 'chunks back to back are fine');
    await refused({ ...good, packs: [P1, P1] }, {}, /a pack named twice/);
    await refused({ ...good, packs: [P1, P2, d(0xcc)] }, {}, /holds none of the list's chunks/);
  });

  it('refuses a list that inflates past its limit (a gzip bomb) without inflating it', async () => {
    const bomb = gzipSync(Buffer.alloc(64 * 1024 * 1024, 0x20));
    await assert.rejects(parseChunkList(bomb, { size: bomb.length, files: 1, count: 1, bytes: 1 }, { ...defaultLimits, maxChunkListBytes: 1024 * 1024 }), /not a gzip stream of at most/);
  });

  it('refuses chunks above the size limit, files out of order, totals that differ, and junk', async () => {
    await refused({ ...good, files: [{ path: 'a', size: 2 * 1024 * 1024, digest: d(1), chunks: [[d(2), 2 * 1024 * 1024, 0, 0, 2 * 1024 * 1024]] }, good.files[1]] }, { bytes: 2 * 1024 * 1024 + 100, count: 2 }, /a chunk of 2097152 bytes/);
    await refused({ ...good, files: [good.files[1], good.files[0]] }, {}, /out of order/);
    await refused(good, { bytes: 500 }, /400 bytes, the record declares 500/);
    await refused({ ...good, files: [{ ...good.files[0], extra: 1 }, good.files[1]] }, {}, /does not parse/);
    await refused({ ...good, files: [{ ...good.files[0], chunks: [['../x', 100, 0, 0, 130], [d(3), 200, 1, 0, 230]] }, good.files[1]] }, {}, /does not parse/);
    await refused({ ...good, packs: ['../../x', P2] }, {}, /does not parse/);
    await refused({ version: 1, files: [{ path: 'a/big', size: 300, digest: d(1), chunks: [[d(2), 100], [d(3), 200]] }, good.files[1]] }, {}, /does not parse/);
    const stored = encodeChunkList(good);
    await assert.rejects(parseChunkList(stored, { ...declaredOf(stored, good), size: stored.length + 1 }, defaultLimits), /bytes stored, the record declares/);
  });
});
