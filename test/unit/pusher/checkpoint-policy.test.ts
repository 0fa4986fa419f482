// When a full checkpoint is due (src/pusher/checkpoint-policy.ts): by the weight of the deltas since the last one
// against the container's size, by the age of the last one, never without a delta since it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  checkpointDue, DEFAULT_CHECKPOINT_POLICY, deltaWeight, MIN_CONTAINER_WEIGHT_BYTES, MIN_DELTA_WEIGHT_BYTES, shippedFileBytes, type CheckpointFacts,
} from '../../../src/pusher/checkpoint-policy.js';

const MiB = 1024 * 1024;
const HOUR = 3_600_000;
const now = 1_000 * HOUR;
const facts = (f: Partial<CheckpointFacts>): CheckpointFacts => ({
  deltaBytesSinceFull: 0, deltasSinceFull: 0, containerBytes: 100 * MiB, lastFullAt: now - 1000, since: now - 1000, ...f,
});

describe('checkpointDue', () => {
  it('is due once the deltas weigh more than the share of the container, not before', () => {
    const p = { deltaShare: 0.5, maxAgeMs: 6 * HOUR };
    assert.deepEqual(checkpointDue(p, facts({ deltasSinceFull: 3, deltaBytesSinceFull: 50 * MiB }), now), { due: false });
    const v = checkpointDue(p, facts({ deltasSinceFull: 3, deltaBytesSinceFull: 50 * MiB + 1 }), now);
    assert.equal(v.due, true);
    assert.equal(v.due && v.reason, 'share');
    assert.match(v.due ? v.detail : '', /3 deltas weigh 52428801 bytes, over 0.5 of 104857600/);
  });

  it('is due once the last checkpoint is older than the age, when deltas followed it', () => {
    const p = { deltaShare: 0.5, maxAgeMs: 6 * HOUR };
    assert.deepEqual(checkpointDue(p, facts({ deltasSinceFull: 1, deltaBytesSinceFull: 4096, lastFullAt: now - 6 * HOUR }), now), { due: false });
    const v = checkpointDue(p, facts({ deltasSinceFull: 1, deltaBytesSinceFull: 4096, lastFullAt: now - 6 * HOUR - 1 }), now);
    assert.equal(v.due && v.reason, 'age');
  });

  it('is never due without a delta since the last checkpoint, however old or small', () => {
    const p = { deltaShare: 0.01, maxAgeMs: 1 };
    assert.deepEqual(checkpointDue(p, facts({ deltasSinceFull: 0, deltaBytesSinceFull: 0, lastFullAt: 0, containerBytes: 0 }), now), { due: false });
  });

  it('counts the age from `since` when the last checkpoint\'s time is unknown', () => {
    const p = { deltaShare: 0.5, maxAgeMs: HOUR };
    const f = { deltasSinceFull: 2, deltaBytesSinceFull: 8192, lastFullAt: null };
    assert.deepEqual(checkpointDue(p, facts({ ...f, since: now - HOUR }), now), { due: false });
    assert.equal(checkpointDue(p, facts({ ...f, since: now - HOUR - 1 }), now).due, true);
  });

  it('weighs a tiny container as MIN_CONTAINER_WEIGHT_BYTES: an empty one is not checkpointed after every delta', () => {
    const p = DEFAULT_CHECKPOINT_POLICY;
    const perCheckpoint = (MIN_CONTAINER_WEIGHT_BYTES * p.deltaShare) / MIN_DELTA_WEIGHT_BYTES;
    let bytes = 0;
    let n = 0;
    while (checkpointDue(p, facts({ containerBytes: 0, deltasSinceFull: n, deltaBytesSinceFull: bytes }), now).due === false && n < 10_000) {
      bytes += deltaWeight(10);
      n++;
    }
    assert.equal(n, perCheckpoint + 1, 'the first delta past half a MiB of 4 KiB deltas');
  });

  it('weighs each delta at least MIN_DELTA_WEIGHT_BYTES, and a bad byte count as nothing more', () => {
    assert.equal(deltaWeight(0), MIN_DELTA_WEIGHT_BYTES);
    assert.equal(deltaWeight(1), MIN_DELTA_WEIGHT_BYTES);
    assert.equal(deltaWeight(5 * MiB), 5 * MiB);
    assert.equal(deltaWeight(Number.NaN), MIN_DELTA_WEIGHT_BYTES);
    assert.equal(deltaWeight(-7), MIN_DELTA_WEIGHT_BYTES);
  });

  it('has defaults of half the container and six hours', () => {
    assert.deepEqual(DEFAULT_CHECKPOINT_POLICY, { deltaShare: 0.5, maxAgeMs: 6 * HOUR, quietMs: 5000 });
  });
});

describe('shippedFileBytes', () => {
  it('adds up the regular files of a serialized index, nothing else', () => {
    const rec = (t: string, size: number) => ({ t, ino: 1, size, m: '0', c: '0', mode: 0o644, uid: 0, gid: 0 });
    const index = {
      version: 1 as const,
      entries: [
        ['a', rec('f', 100)], ['d', rec('d', 4096)], ['d/b', rec('f', 23)], ['l', rec('l', 9)], ['w', rec('w', 0)], ['odd', null], ['neg', rec('f', -5)],
      ] as Array<[string, unknown]>,
    };
    assert.equal(shippedFileBytes(index), 123);
    assert.equal(shippedFileBytes({ entries: [] }), 0);
  });
});
