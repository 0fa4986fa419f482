// Which queued checkpoint a commit whose blob retention retired gives way to (pure): the newest full checkpoint of the
// generation queued after it, or none.
import { describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import type { CommitRecord, Digest, Generation, Seq } from '../../../src/store/index.js';
import { supersedingCheckpoint } from '../../../src/puller/superseded.js';

const rec = (seq: number, kind: 'delta' | 'full' = 'delta', generation = 1): CommitRecord => ({
  version: 1, seq: seq as Seq, parentSeq: (seq - 1) as Seq, generation: generation as Generation, container: 'c', digest: 'a'.repeat(64) as Digest,
  size: 1, kind, counts: { files: 1, deletions: 0, bytes: 1 }, firstWriteAt: '2026-12-07T00:00:00Z', publishedAt: '2026-12-07T00:00:00Z', writer: 'w',
  ...(kind === 'full' ? { sameAs: (seq - 1) as Seq } : {}),
});

describe('supersedingCheckpoint', () => {
  it('the newest full checkpoint queued after the commit at the queue head', () => {
    const q = [rec(2), rec(3), rec(4, 'full'), rec(5), rec(6, 'full'), rec(7)];
    assert.equal(supersedingCheckpoint(q, q[0]!), 4);
    const one = [rec(2), rec(3), rec(4, 'full'), rec(5)];
    assert.equal(supersedingCheckpoint(one, one[1]!), -1, 'only for the queue head');
    assert.equal(supersedingCheckpoint(one, one[0]!), 2);
  });

  it('none: no checkpoint queued after it, the commit itself the only full one, or another generation', () => {
    const deltas = [rec(2), rec(3)];
    assert.equal(supersedingCheckpoint(deltas, deltas[0]!), -1);
    const full = [rec(4, 'full'), rec(5)];
    assert.equal(supersedingCheckpoint(full, full[0]!), -1);
    const other = [rec(2), rec(9, 'full', 2)];
    assert.equal(supersedingCheckpoint(other, other[0]!), -1);
    assert.equal(supersedingCheckpoint([], rec(2)), -1);
  });
});
