import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomFillSync } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { lstat, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readFileStable, recheckEveryBytes } from '../../../src/changeset/stable-read.js';

describe('readFileStable', () => {
  let dir = '';
  const size = 8 * recheckEveryBytes;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tl-stable-read-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads a file that stays as it was to its end', async () => {
    const file = join(dir, 'still.bin');
    await writeFile(file, randomFillSync(Buffer.alloc(size)));
    const st = await lstat(file, { bigint: true });
    let seen = 0;
    assert.equal(await readFileStable(file, st, () => Promise.resolve(), (b) => { seen += b.length; }), true);
    assert.equal(seen, size);
  });

  it('gives up within a recheck of the file changing under it, not at its end', async () => {
    const file = join(dir, 'growing.bin');
    await writeFile(file, randomFillSync(Buffer.alloc(size)));
    const st = await lstat(file, { bigint: true });
    let seen = 0;
    const ok = await readFileStable(file, st, () => Promise.resolve(), (b) => {
      // The writer goes on while the first bytes are handed over (a bulk write found by a burst's first flush).
      if (seen === 0) appendFileSync(file, 'more');
      seen += b.length;
    });
    assert.equal(ok, false, 'a file that changed while read is torn');
    assert.ok(seen > 0 && seen <= recheckEveryBytes + 1024 * 1024, `handed on ${seen} of ${size} bytes before giving up`);
  });

  it('still finds a change after the last recheck (the stat after the read)', async () => {
    const file = join(dir, 'tail.bin');
    await writeFile(file, randomFillSync(Buffer.alloc(size)));
    const st = await lstat(file, { bigint: true });
    let seen = 0;
    const ok = await readFileStable(file, st, () => Promise.resolve(), (b) => {
      seen += b.length;
      if (seen === size) appendFileSync(file, 'more');
    });
    assert.equal(ok, false);
    assert.equal(seen, size);
  });
});
