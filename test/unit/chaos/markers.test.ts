// The chaos soak's failover oracle: which markers a promoted container must hold, may hold, and which acknowledged
// writes must be found in the old primary's divergent tail; markers read from a changeset and from an upper dir.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create } from 'tar';
import { judgePromoted, MarkerBook, markersInChangeset, markersInUpper, markerScript, MARKER_DIR, ranges } from '../../../bench/chaos/markers.js';

describe('chaos markers', () => {
  it('numbers the writes of a container one at a time, each in the epoch it began in', () => {
    const book = new MarkerBook(['c01', 'c02'], 'a');
    const w1 = book.begin('c01');
    assert.ok(w1);
    assert.equal(book.begin('c01'), null, 'a second write of c01 waits for the first');
    const v1 = book.begin('c02');
    assert.equal(v1?.n, 1);
    book.newEpoch('c01', 'b', new Set([1]));
    book.end('c01', w1, true);
    assert.deepEqual([...w1.epoch.acked], [1], 'acknowledged in the epoch it was written in');
    assert.equal(book.epoch('c01').acked.size, 0);
    const w2 = book.begin('c01');
    assert.equal(w2?.n, 2);
    assert.equal(book.epoch('c01').start, 2);
    assert.equal(book.epoch('c01').host, 'b');
    assert.equal(book.inFlight(), 2);
  });

  it('judges a promoted container: base and finalized acknowledged markers present, nothing beyond, the rest lost', () => {
    const epoch = { host: 'a', start: 10, base: new Set([1, 2, 5]), acked: new Set([10, 11, 12, 14, 15, 16]) };
    // Finalized up to marker 14; 13 was never acknowledged (an exec cut by an engine kill) and is absent.
    assert.deepEqual(judgePromoted(epoch, 14, new Set([1, 2, 5, 10, 11, 12, 14])), { missing: [], unexpected: [], lost: [15, 16] });
    // 13 written after all (its exec failed after the echo): allowed.
    assert.deepEqual(judgePromoted(epoch, 14, new Set([1, 2, 5, 10, 11, 12, 13, 14])).unexpected, []);
    const v = judgePromoted(epoch, 14, new Set([1, 5, 10, 12, 14, 17, 8]));
    assert.deepEqual(v.missing, [2, 11], 'a base marker and a finalized acknowledged one are gone');
    assert.deepEqual(v.unexpected, [8, 17], 'a marker of no epoch, and one beyond what was finalized');
    assert.deepEqual(judgePromoted(epoch, 0, new Set([1, 2, 5])).lost, [10, 11, 12, 14, 15, 16], 'nothing finalized: every write of the epoch is lost');
  });

  it('reads the markers of a gzip\'d changeset and of an upper dir, and names markers with the wrong content', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tl-markers-'));
    try {
      const root = join(dir, 'root');
      await mkdir(join(root, MARKER_DIR), { recursive: true });
      await mkdir(join(root, 'data'), { recursive: true });
      for (const n of [3, 4, 9]) await writeFile(join(root, MARKER_DIR, String(n)), `${n}\n`);
      await writeFile(join(root, MARKER_DIR, '7'), 'not seven\n');
      await writeFile(join(root, MARKER_DIR, '11'), '');
      await writeFile(join(root, 'data', '5'), '5\n');
      const file = join(dir, 'c.tar.gz');
      await create({ gzip: true, file, cwd: root }, [MARKER_DIR, 'data']);
      const inTar = await markersInChangeset(file);
      assert.deepEqual([...inTar.markers].sort((a, b) => a - b), [3, 4, 9]);
      assert.equal(inTar.bad.length, 1);
      assert.match(inTar.bad[0] ?? '', /chaos-m\/7 holds "not seven/);
      assert.deepEqual([...inTar.empty], [11], 'created, not yet written: empty, not torn');
      const inUpper = await markersInUpper(root);
      assert.deepEqual([...inUpper.markers].sort((a, b) => a - b), [3, 4, 9]);
      assert.equal(inUpper.bad.length, 1);
      assert.deepEqual([...inUpper.empty], [11]);
      assert.deepEqual((await markersInUpper(join(dir, 'none'))).markers.size, 0, 'no marker dir: no markers');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('remembers the markers a failover booted empty, for every later epoch of the container', () => {
    const book = new MarkerBook(['c01'], 'a');
    assert.equal(book.halfWritten('c01').size, 0);
    book.noteHalfWritten('c01', [80]);
    book.newEpoch('c01', 'b', new Set([1, 2]));
    book.noteHalfWritten('c01', [95]);
    assert.deepEqual([...book.halfWritten('c01')].sort((a, b) => a - b), [80, 95]);
  });

  it('writes a marker only as the last step and gives its status', () => {
    assert.equal(markerScript(12), 'mkdir -p /chaos-m && echo 12 > /chaos-m/12');
    assert.equal(ranges([9, 1, 2, 3, 5, 7, 8]), '1-3, 5, 7-9');
    assert.equal(ranges([]), '');
  });
});
