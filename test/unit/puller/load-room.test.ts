// The room an image load needs: the work dir's copy, and docker load's in the engine's storage (twice under either
// store: overlay2's load untars into a temp dir of its data root first), summed when both are on one file system.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { engineCopies, engineRoomProblem, loadRoomProblem } from '../../../src/puller/load-room.js';

const GiB = 2 ** 30;
const disk = (dev: number, freeGiB: number, path = `/fs${dev}`) => ({ path, dev: BigInt(dev), free: freeGiB * GiB });

describe('load room', () => {
  it('docker load writes the layers twice more under either store', () => {
    assert.equal(engineCopies('overlay2'), 2);
    assert.equal(engineCopies('containerd'), 2);
  });

  it('one file system holds the work dir\'s copy and the engine\'s, plus the reserve', () => {
    const base = { layerBytes: 10 * GiB, reserve: GiB };
    // overlay2: 10 × 3 + 1 = 31 GiB (the archive untarred into the data root's tmp, then the diff dirs).
    assert.equal(loadRoomProblem({ ...base, store: 'overlay2', work: disk(1, 31), engine: disk(1, 31) }), null);
    assert.match(loadRoomProblem({ ...base, store: 'overlay2', work: disk(1, 30.9), engine: disk(1, 30.9) }) ?? '', /one file system that needs 33285996544 bytes/);
    // The work dir's check alone (11 GiB), or one engine copy (21 GiB), would have let this through.
    assert.notEqual(loadRoomProblem({ ...base, store: 'overlay2', work: disk(1, 21), engine: disk(1, 21) }), null);
    // containerd: 10 × 3 + 1 = 31 GiB.
    assert.equal(loadRoomProblem({ ...base, store: 'containerd', work: disk(1, 31), engine: disk(1, 31) }), null);
    assert.match(loadRoomProblem({ ...base, store: 'containerd', work: disk(1, 30), engine: disk(1, 30) }) ?? '', /written 2 more time\(s\) by docker load/);
  });

  it('two file systems each hold their part, each with the reserve', () => {
    const base = { layerBytes: 10 * GiB, reserve: GiB };
    assert.equal(loadRoomProblem({ ...base, store: 'overlay2', work: disk(1, 11), engine: disk(2, 21) }), null);
    assert.match(loadRoomProblem({ ...base, store: 'overlay2', work: disk(1, 10.5), engine: disk(2, 100) }) ?? '', /\/fs1 needs 11811160064 bytes free to check them/);
    assert.match(loadRoomProblem({ ...base, store: 'overlay2', work: disk(1, 100), engine: disk(2, 10.5) }) ?? '', /into \/fs2 \(overlay2\), whose file system needs 22548578304/);
    assert.equal(loadRoomProblem({ ...base, store: 'containerd', work: disk(1, 11), engine: disk(2, 21) }), null);
    assert.match(loadRoomProblem({ ...base, store: 'containerd', work: disk(1, 11), engine: disk(2, 20) }) ?? '', /writes them 2 time\(s\)/);
  });
});

describe('load room after the fetch', () => {
  it('the engine\'s file system holds docker load\'s copies of what was fetched, as it is now', () => {
    const base = { layerBytes: 10 * GiB, reserve: GiB };
    assert.equal(engineRoomProblem({ ...base, store: 'overlay2', engine: disk(1, 21) }), null);
    assert.match(engineRoomProblem({ ...base, store: 'containerd', engine: disk(1, 20.5) }) ?? '', /writes them 2 time\(s\) into \/fs1 \(containerd\), whose file system needs 22548578304 bytes free/);
  });
});
