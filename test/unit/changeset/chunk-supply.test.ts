// ChunkSupply.write leaves a chunk of zeros as a hole (a sparse file stays sparse in the twin) and still checks the
// whole file's digest. The chunks are "fetched" by a function that writes them as PackStore.fetchRange does (inflated,
// back to back); the pack store itself, and staging on overlayfs, are tested in test/integration/changeset.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChangesetRejectedError, type ChunkList, type ListedFile } from '../../../src/changeset/index.js';
import { ChunkSupply, isZeros, type PackRange } from '../../../src/changeset/chunk-supply.js';
import { TreeRoots } from '../../../src/changeset/tree-roots.js';

const KiB = 1024;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const PACK = 'a'.repeat(64);

/** A one-file list of `parts` (each a chunk, placed back to back in one pack; stored = size: fetch ignores it). */
function listOf(parts: Buffer[], digest = sha(Buffer.concat(parts))): { list: ChunkList; file: ListedFile; bytes: Map<string, Buffer> } {
  const bytes = new Map<string, Buffer>();
  let offset = 0;
  const chunks = parts.map((p) => {
    bytes.set(sha(p), p);
    const c = [sha(p), p.length, 0, offset, p.length] as const;
    offset += p.length;
    return c;
  });
  const file: ListedFile = { path: 'big', size: offset, digest, chunks };
  return { list: { version: 2, packs: [PACK], files: [file] }, file, bytes };
}

/** Writes the chunks of `parts` into `out` through a ChunkSupply; returns the file's bytes and allocated blocks. */
async function assemble(dir: string, parts: Buffer[], digest?: string): Promise<{ content: Buffer; blocks: number }> {
  const { list, file, bytes } = listOf(parts, digest);
  const fetch = async (range: PackRange, to: string): Promise<{ status: 'ok' }> => {
    await writeFile(to, Buffer.concat(range.entries.map((e) => bytes.get(e.digest)!)), { flag: 'wx' });
    return { status: 'ok' };
  };
  const supply = await ChunkSupply.prepare({ list, roots: new TreeRoots(join(dir, 'upper')), locate: () => undefined, packs: list.packs, fetch, dir: join(dir, 'chunks') });
  const out = join(dir, `out-${randomBytes(4).toString('hex')}`);
  try {
    const fh = await open(out, 'wx');
    try {
      await supply.write(fh, file);
    } finally {
      await fh.close();
    }
    return { content: await readFile(out), blocks: Number((await stat(out)).blocks) };
  } finally {
    await supply.close();
    await rm(out, { force: true });
  }
}

describe('ChunkSupply.write', () => {
  it('isZeros: true only when every byte is zero, at any length', () => {
    assert.equal(isZeros(Buffer.alloc(0)), true);
    assert.equal(isZeros(Buffer.alloc(200 * KiB)), true);
    for (const at of [0, 64 * KiB - 1, 64 * KiB, 200 * KiB - 1]) {
      const b = Buffer.alloc(200 * KiB);
      b[at] = 1;
      assert.equal(isZeros(b), false, `a one at ${at}`);
    }
  });

  it('leaves chunks of zeros unwritten (also the last one) and gives the file its full length', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tl-supply-'));
    try {
      const data = randomBytes(256 * KiB);
      const parts = [data, Buffer.alloc(512 * KiB), Buffer.alloc(512 * KiB), randomBytes(64 * KiB), Buffer.alloc(512 * KiB)];
      const got = await assemble(dir, parts);
      assert.ok(got.content.equals(Buffer.concat(parts)), 'the assembled file has the content of its chunks');
      // 320 KiB written; 1.5 MiB of zeros are holes (a filesystem without holes would allocate ~1.8 MiB).
      assert.ok(got.blocks * 512 <= 320 * KiB + 64 * KiB, `the file allocates ${got.blocks * 512} bytes`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('still refuses a file whose chunks do not make its digest, zeros or not', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tl-supply-'));
    try {
      await assert.rejects(assemble(dir, [randomBytes(64 * KiB), Buffer.alloc(512 * KiB)], sha(Buffer.alloc(1))), ChangesetRejectedError);
      await assert.rejects(assemble(dir, [Buffer.alloc(512 * KiB)], sha(Buffer.alloc(512 * KiB - 1))), ChangesetRejectedError);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
