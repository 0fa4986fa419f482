// The chunk list is untrusted input on the standby: its totals are bounded before it is fetched, and it is held to
// them, and to itself, while it is parsed.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import {
  ChangesetRejectedError, chunkListProblem, defaultLimits, encodeChunkList, parseChunkList, summarize, type ChunkList, type ChunkListDeclared,
} from '../../../src/changeset/index.js';

const d = (n: number): string => n.toString(16).padStart(64, '0');
const good: ChunkList = {
  version: 1,
  files: [
    { path: 'a/big', size: 300, digest: d(1), chunks: [[d(2), 100], [d(3), 200]] },
    { path: 'b', size: 100, digest: d(4), chunks: [[d(2), 100]] },
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
    await refused({ version: 1, files: [{ ...good.files[0], size: 301 }, good.files[1]] }, { bytes: 401 }, /add up to 300 bytes, the file has 301/);
  });

  it('refuses a chunk reused with a different length', async () => {
    await refused({ version: 1, files: [good.files[0], { path: 'b', size: 101, digest: d(4), chunks: [[d(2), 101]] }] }, { bytes: 401 }, /lengths 100 and 101/);
  });

  it('refuses a list that names more chunks than its record declares, or than the limit', async () => {
    const many = { version: 1, files: [{ path: 'x', size: 5000, digest: d(1), chunks: Array.from({ length: 5000 }, (_, i) => [d(i + 10), 1]) }] };
    await refused(many, { files: 1, count: 3, bytes: 5000 }, /more chunks than the 3/);
    await refused(good, { count: 2 }, /more chunks than the 2/);
  });

  it('refuses a list that inflates past its limit (a gzip bomb) without inflating it', async () => {
    const bomb = gzipSync(Buffer.alloc(64 * 1024 * 1024, 0x20));
    await assert.rejects(parseChunkList(bomb, { size: bomb.length, files: 1, count: 1, bytes: 1 }, { ...defaultLimits, maxChunkListBytes: 1024 * 1024 }), /not a gzip stream of at most/);
  });

  it('refuses chunks above the size limit, files out of order, totals that differ, and junk', async () => {
    await refused({ version: 1, files: [{ path: 'a', size: 2 * 1024 * 1024, digest: d(1), chunks: [[d(2), 2 * 1024 * 1024]] }, good.files[1]] }, { bytes: 2 * 1024 * 1024 + 100, count: 2 }, /a chunk of 2097152 bytes/);
    await refused({ version: 1, files: [good.files[1], good.files[0]] }, {}, /out of order/);
    await refused(good, { bytes: 500 }, /400 bytes, the record declares 500/);
    await refused({ version: 1, files: [{ ...good.files[0], extra: 1 }, good.files[1]] }, {}, /does not parse/);
    await refused({ version: 1, files: [{ ...good.files[0], chunks: [['../x', 100], [d(3), 200]] }, good.files[1]] }, {}, /does not parse/);
    const stored = encodeChunkList(good);
    await assert.rejects(parseChunkList(stored, { ...declaredOf(stored, good), size: stored.length + 1 }, defaultLimits), /bytes stored, the record declares/);
  });
});
