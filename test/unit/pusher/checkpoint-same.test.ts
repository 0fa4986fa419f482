// Whether a checkpoint's shipped state is the one its parent left (checkpoint-same.ts): the same paths with the same
// records, in any order; any difference of a path, a stat field, an opaque flag or a racy fingerprint is one.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { SerializedIndex } from '../../../src/changeset/index.js';
import { racyPaths, sameShippedState } from '../../../src/pusher/checkpoint-same.js';

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

  it('is false for any stat field of a record that differs, or an opaque flag', () => {
    for (const over of [{ ino: 70 }, { size: 4 }, { m: '101' }, { c: '201' }, { mode: 0o600 }, { uid: 1 }, { gid: 1 }, { t: 'l' }, { o: true }]) {
      assert.equal(sameShippedState(base, index([['a', rec(over)], ...base.entries.slice(1)])), false, JSON.stringify(over));
    }
  });

  it('takes a path shipped racily clean as the same only when the checkpoint took the same fingerprint', () => {
    const racy = (h: string | undefined): SerializedIndex => index([['a', rec(h === undefined ? {} : { h })], ...base.entries.slice(1)]);
    const x = 'ab'.repeat(32);
    assert.equal(sameShippedState(racy(x), racy(x)), true, 'the same fingerprint');
    assert.equal(sameShippedState(racy(x), racy('cd'.repeat(32))), false, 'another content under the same stat');
    assert.equal(sameShippedState(racy(x), racy(undefined)), false, 'read once settled: nothing to compare the fingerprint with');
    assert.equal(sameShippedState(racy(''), racy('')), false, 'an unknown fingerprint proves nothing');
    assert.equal(sameShippedState(racy(undefined), racy(x)), true, 'shipped trusted by stat, and the stat is the same');
  });
});

describe('racyPaths', () => {
  it('counts the records that carry a fingerprint, an unknown one included', () => {
    assert.equal(racyPaths(index([])), 0);
    assert.equal(racyPaths(index([['a', rec()], ['b', rec({ ino: 8 })]])), 0);
    assert.equal(racyPaths(index([['a', rec({ h: 'ab'.repeat(32) })], ['b', rec({ ino: 8, h: '' })], ['c', rec({ ino: 9 })]])), 2);
  });
});
