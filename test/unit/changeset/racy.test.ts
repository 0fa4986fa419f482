import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Fingerprint, isRacy, racyMarginNs, racyWindowNs } from '../../../src/changeset/racy.js';

const ms = 1_000_000n;
const s = 1_000_000_000n;

describe('the racy window', () => {
  it('is the margin for nanosecond stamps and a second more for whole-second ones', () => {
    assert.equal(racyMarginNs, 50n * ms);
    assert.equal(racyWindowNs(1_700_000_000n * s + 123_456_789n), 50n * ms);
    assert.equal(racyWindowNs(1_700_000_000n * s), s + 50n * ms);
  });
  it('covers changes not older than the scan start by more than the window, and changes stamped after it', () => {
    const start = 1_700_000_000n * s + 500n * ms + 1n;
    assert.equal(isRacy({ ctimeNs: start - 50n * ms }, start), false, 'exactly one window old: clean');
    assert.equal(isRacy({ ctimeNs: start - 50n * ms + 1n }, start), true);
    assert.equal(isRacy({ ctimeNs: start - 10n * s }, start), false);
    assert.equal(isRacy({ ctimeNs: start + 3n * ms }, start), true, 'a ctime after the scan start (the clock stepped back)');
    const whole = 1_700_000_000n * s;
    assert.equal(isRacy({ ctimeNs: whole }, whole + s + 49n * ms), true, 'a whole-second stamp may hide a change until the next second');
    assert.equal(isRacy({ ctimeNs: whole }, whole + s + 50n * ms), false);
  });
});

describe('Fingerprint', () => {
  const print = (xattrs: Array<[string, string]>, ...chunks: string[]): string => {
    const f = new Fingerprint(xattrs.map(([n, v]) => [n, Buffer.from(v)]));
    for (const c of chunks) f.update(c);
    return f.digest();
  };
  it('depends on content and shipped xattrs, not on how they arrive', () => {
    assert.equal(print([['user.a', '1'], ['user.b', '2']], 'ab', 'c'), print([['user.b', '2'], ['user.a', '1']], 'abc'));
    assert.equal(print([['trusted.overlay.opaque', 'y']], 'x'), print([], 'x'), 'overlayfs xattrs are not shipped');
    assert.notEqual(print([], 'abc'), print([], 'abd'));
    assert.notEqual(print([['user.a', '1']], 'x'), print([['user.a', '2']], 'x'));
  });
  it('keeps the bytes of xattrs and content apart', () => {
    assert.notEqual(print([['user.a', 'bc']], ''), print([['user.a', 'b']], 'c'));
    assert.notEqual(print([['user.ab', '']], ''), print([['user.a', 'b']], ''));
    assert.notEqual(print([], ''), print([['user.a', '']], ''));
  });
});
