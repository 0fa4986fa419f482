// Whether a checkpoint's shipped state is the one its parent left (checkpoint-same.ts): the same paths with the same
// records, in any order; any difference of a path, a stat field, an opaque flag or a racy fingerprint is one.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { SerializedIndex } from '../../../src/changeset/index.js';
import { sameShippedState } from '../../../src/pusher/checkpoint-same.js';

const rec = (over: Record<string, unknown> = {}): Record<string, unknown> => ({ t: 'f', ino: 7, size: 3, m: '100', c: '200', mode: 0o644, uid: 0, gid: 0, ...over });
const index = (entries: Array<[string, unknown]>): SerializedIndex => ({ version: 1, entries });

describe('sameShippedState', () => {
  const base = index([['a', rec()], ['d', rec({ t: 'd', size: 0, mode: 0o755 })], ['d/b', rec({ ino: 8 })]]);

  it('is true for the same paths and records, whatever the order of entries and of fields', () => {
    assert.equal(sameShippedState(base, index([...base.entries])), true);
    const reordered = index([['d/b', { gid: 0, uid: 0, mode: 0o644, c: '200', m: '100', size: 3, ino: 8, t: 'f' }], ['a', rec()], ['d', rec({ t: 'd', size: 0, mode: 0o755 })]]);
    assert.equal(sameShippedState(base, reordered), true);
    assert.equal(sameShippedState(index([]), index([])), true);
  });

  it('is false for a path added, removed or renamed', () => {
    assert.equal(sameShippedState(base, index([...base.entries, ['new', rec({ ino: 9 })]])), false);
    assert.equal(sameShippedState(base, index(base.entries.slice(1))), false);
    assert.equal(sameShippedState(base, index([['A', rec()], ...base.entries.slice(1)])), false);
  });

  it('is false for any field of a record that differs, an opaque flag or a racy fingerprint', () => {
    for (const over of [{ ino: 70 }, { size: 4 }, { m: '101' }, { c: '201' }, { mode: 0o600 }, { uid: 1 }, { gid: 1 }, { t: 'l' }, { o: true }, { h: 'ab'.repeat(32) }, { h: '' }]) {
      assert.equal(sameShippedState(base, index([['a', rec(over)], ...base.entries.slice(1)])), false, JSON.stringify(over));
    }
  });
});
