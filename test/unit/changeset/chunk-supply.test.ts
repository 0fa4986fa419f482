// ChunkSupply.take leaves a chunk of zeros as a hole (a sparse file stays sparse in the twin), still checks the whole
// file's digest, writes a fetched chunk once where it belongs and copies it to its other places, and gives the caller
// the assembled file itself (a hard link) or, across file systems, a copy. The chunks are "fetched" by a function
// that hands them over as PackStore.fetchRangeInto does (inflated, in entry order); the pack store itself, and
// staging on overlayfs, are tested in test/integration/changeset.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { access, mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChangesetRejectedError, type ChunkList, type ListedFile } from '../../../src/changeset/index.js';
import { ChunkSupply, hashSpan, isZeros, type ChunkOut, type PackRange } from '../../../src/changeset/chunk-supply.js';
import { TreeRoots } from '../../../src/changeset/tree-roots.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const PACK = 'a'.repeat(64);

/** A list of files made of `files` (each a list of chunks); each distinct chunk placed once, back to back, in one
 *  pack (stored = size: fetch ignores it). */
function listOf(files: Buffer[][], digests: Array<string | undefined> = []): { list: ChunkList; bytes: Map<string, Buffer> } {
  const bytes = new Map<string, Buffer>();
  const at = new Map<string, number>();
  let offset = 0;
  const listed = files.map((parts, i): ListedFile => {
    const chunks = parts.map((p) => {
      const d = sha(p);
      if (!at.has(d)) {
        at.set(d, offset);
        bytes.set(d, p);
        offset += p.length;
      }
      return [d, p.length, 0, at.get(d)!, p.length] as const;
    });
    return { path: `f${i}`, size: parts.reduce((n, p) => n + p.length, 0), digest: digests[i] ?? sha(Buffer.concat(parts)), chunks };
  });
  return { list: { version: 2, packs: [PACK], files: listed }, bytes };
}

/** Prepares a supply for `files` (counting the chunks fetched), takes each file into `outDir`; returns their bytes,
 *  allocated blocks and inodes, and the supply's chunk dir's file inodes. */
async function assemble(dir: string, files: Buffer[][], o: { digests?: Array<string | undefined>; outDir?: string } = {}) {
  const { list, bytes } = listOf(files, o.digests);
  const handed: string[] = [];
  const fetch = async (range: PackRange, out: ChunkOut): Promise<{ status: 'ok' }> => {
    for (const e of range.entries) {
      handed.push(e.digest);
      await out(e, bytes.get(e.digest)!);
    }
    return { status: 'ok' };
  };
  const supply = await ChunkSupply.prepare({ list, roots: new TreeRoots(join(dir, 'upper')), locate: () => undefined, packs: list.packs, fetch, dir: join(dir, 'chunks') });
  const outs = list.files.map((f) => join(o.outDir ?? dir, `out-${f.path}-${randomBytes(4).toString('hex')}`));
  try {
    const got = [];
    for (const [i, f] of list.files.entries()) {
      const out = outs[i]!;
      await supply.take(f, out);
      const st = await stat(out);
      got.push({ content: await readFile(out), blocks: Number(st.blocks), ino: st.ino, dev: st.dev, assembled: (await stat(join(dir, 'chunks', `file-${i}`))).ino });
    }
    return { files: got, handed };
  } finally {
    await supply.close();
    for (const out of outs) await rm(out, { force: true });
  }
}

describe('ChunkSupply.take', () => {
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
      const got = (await assemble(dir, [parts])).files[0]!;
      assert.ok(got.content.equals(Buffer.concat(parts)), 'the assembled file has the content of its chunks');
      // 320 KiB written; 1.5 MiB of zeros are holes (a filesystem without holes would allocate ~1.8 MiB).
      assert.ok(got.blocks * 512 <= 320 * KiB + 64 * KiB, `the file allocates ${got.blocks * 512} bytes`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('still refuses a file whose chunks do not make its digest, zeros or not, and makes nothing at the name', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tl-supply-'));
    try {
      await assert.rejects(assemble(dir, [[randomBytes(64 * KiB), Buffer.alloc(512 * KiB)]], { digests: [sha(Buffer.alloc(1))] }), ChangesetRejectedError);
      await assert.rejects(assemble(dir, [[Buffer.alloc(512 * KiB)]], { digests: [sha(Buffer.alloc(512 * KiB - 1))] }), ChangesetRejectedError);
      const { list, bytes } = listOf([[randomBytes(64 * KiB)]], [sha(Buffer.alloc(1))]);
      const supply = await ChunkSupply.prepare({
        list, roots: new TreeRoots(join(dir, 'upper')), locate: () => undefined, packs: list.packs, dir: join(dir, 'chunks'),
        fetch: async (range, out) => {
          for (const e of range.entries) await out(e, bytes.get(e.digest)!);
          return { status: 'ok' };
        },
      });
      try {
        await assert.rejects(supply.take(list.files[0]!, join(dir, 'refused')), ChangesetRejectedError);
        await assert.rejects(access(join(dir, 'refused')), { code: 'ENOENT' }, 'a refused file leaves nothing at its name');
      } finally {
        await supply.close();
      }
      await assert.rejects(access(join(dir, 'chunks')), { code: 'ENOENT' }, 'close() removes the chunk dir');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('hashSpan: any span, at any alignment with its blocks, hashes as its bytes; a span past the end is refused', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tl-supply-'));
    try {
      const data = randomBytes(100);
      await writeFile(join(dir, 'f'), data);
      const fh = await open(join(dir, 'f'));
      try {
        const blocks: [Buffer, Buffer] = [Buffer.alloc(7), Buffer.alloc(7)];
        for (const [start, length] of [[0, 100], [3, 50], [99, 1], [0, 7], [0, 14], [7, 8], [93, 7]] as const) {
          const h = createHash('sha256');
          await hashSpan(fh, start, length, h, blocks);
          assert.equal(h.digest('hex'), sha(data.subarray(start, start + length)), `bytes ${start}+${length}`);
        }
        await assert.rejects(hashSpan(fh, 90, 20, createHash('sha256'), blocks), /ends at byte 100, before 110/);
      } finally {
        await fh.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a file of many read blocks, its runs broken by a repeated chunk and by zeros: assembled whole, or refused with nothing at the name', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tl-supply-'));
    try {
      const [a, b, c, d] = [randomBytes(3 * MiB + 5), randomBytes(3 * MiB), randomBytes(2 * MiB + 1), randomBytes(5 * MiB - 3)];
      const parts = [a, b, a, c, Buffer.alloc(MiB), d, b];
      const got = (await assemble(dir, [parts])).files[0]!;
      assert.ok(got.content.equals(Buffer.concat(parts)), 'the assembled file has the content of its chunks');
      // The write-back of the assembled file has begun when the digest is found wrong: the refusal still waits for it
      // and leaves nothing at the name (assemble's take throws before the link).
      const wrong = Buffer.concat(parts);
      wrong[wrong.length - 1]! ^= 1;
      await assert.rejects(assemble(dir, [parts], { digests: [sha(wrong)] }), ChangesetRejectedError);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('fetches a chunk once and writes it to every place it has, in the same file and in another', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tl-supply-'));
    try {
      const [a, b, c] = [randomBytes(100 * KiB), randomBytes(70 * KiB), randomBytes(30 * KiB)];
      const files = [[a, b, a], [c, b, a, Buffer.alloc(64 * KiB)]];
      const got = await assemble(dir, files);
      assert.deepEqual(got.handed.sort(), [sha(a), sha(b), sha(c), sha(Buffer.alloc(64 * KiB))].sort(), 'each distinct chunk is fetched once');
      for (const [i, parts] of files.entries()) assert.ok(got.files[i]!.content.equals(Buffer.concat(parts)), `file ${i} has the content of its chunks`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('hands over the assembled file itself on the same file system, and a sparse copy across file systems', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'tl-supply-'));
    const other = await mkdtemp('/dev/shm/tl-supply-');
    try {
      const parts = [randomBytes(200 * KiB), Buffer.alloc(512 * KiB), randomBytes(10 * KiB)];
      const same = (await assemble(dir, [parts])).files[0]!;
      assert.equal(same.ino, same.assembled, 'the file taken is the file assembled (linked, not copied)');
      if ((await stat(dir)).dev === (await stat(other)).dev) {
        t.diagnostic(`${tmpdir()} and /dev/shm are one file system here: the copy is not exercised`);
        assert.fail('the test needs /dev/shm on another file system than the temp dir');
      }
      const across = (await assemble(dir, [parts], { outDir: other })).files[0]!;
      assert.notEqual(across.ino, across.assembled);
      assert.ok(across.content.equals(Buffer.concat(parts)), 'the copy has the content of the chunks');
      assert.ok(across.blocks * 512 <= 210 * KiB + 64 * KiB, `the copy allocates ${across.blocks * 512} bytes: its zeros stay a hole`);
    } finally {
      await rm(dir, { recursive: true, force: true });
      await rm(other, { recursive: true, force: true });
    }
  });
});
