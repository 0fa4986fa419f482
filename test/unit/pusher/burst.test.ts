import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BurstCollector, mergeScopes, type Burst, type BurstTimers } from '../../../src/pusher/burst.js';

/** Manual clock: timers fire only when the test advances time. */
function manualTimers(): BurstTimers & { advance(ms: number): void } {
  let now = 0;
  let next = 1;
  const pending = new Map<number, { at: number; fn: () => void }>();
  return {
    now: () => now,
    setTimeout: (fn, ms) => {
      const id = next++;
      pending.set(id, { at: now + ms, fn });
      return id;
    },
    clearTimeout: (h) => void pending.delete(h as number),
    advance(ms) {
      const until = now + ms;
      for (let guard = 0; guard < 10_000; guard++) {
        const due = [...pending.entries()].filter(([, t]) => t.at <= until).sort((a, b) => a[1].at - b[1].at)[0];
        if (!due) break;
        pending.delete(due[0]);
        now = due[1].at;
        due[1].fn();
      }
      now = until;
    },
  };
}

function collect(quietMs: number, maxMs: number, maxPaths?: number) {
  const timers = manualTimers();
  const flushed: Array<Burst & { at: number }> = [];
  const c = new BurstCollector({ quietMs, maxMs, ...(maxPaths ? { maxPaths } : {}), timers, onFlush: (b) => flushed.push({ ...b, at: timers.now() }) });
  return { c, timers, flushed };
}

const pathsOf = (b: Burst | undefined): string[] => (b === undefined || b.scope === 'reconcile' ? [] : [...b.scope].sort());

describe('BurstCollector', () => {
  it('flushes the first event of a burst at once and the rest of the burst once it was quiet', () => {
    const { c, timers, flushed } = collect(50, 500);
    c.add('etc/a');
    assert.equal(flushed.length, 1, 'the first event after a quiet period is flushed without waiting');
    assert.deepEqual(pathsOf(flushed[0]), ['etc/a']);
    assert.equal(flushed[0]!.at, 0);
    timers.advance(20);
    c.add('etc/b');
    timers.advance(10);
    c.add('etc/c');
    timers.advance(49);
    assert.equal(flushed.length, 1);
    timers.advance(1);
    assert.equal(flushed.length, 2);
    assert.deepEqual(pathsOf(flushed[1]), ['etc/b', 'etc/c']);
    assert.equal(flushed[1]!.firstEventAt, 20);
    assert.equal(flushed[1]!.at, 80);
  });

  it('a scheduled reconcile is not a change seen (the replication lag counts from changes); a path event or a lost watch is', () => {
    const { c, timers, flushed } = collect(50, 500);
    c.addReconcile();
    assert.equal(flushed[0]!.firstChangeAt, null, 'no burst under way: flushed at once, no change seen');
    timers.advance(30);
    c.add('etc/a');
    assert.equal(flushed[1]!.firstChangeAt, 30, 'the leading flush');
    assert.equal(c.firstChangeAt, null, 'handed over with the burst');
    timers.advance(10);
    c.add('etc/b');
    assert.equal(c.firstChangeAt, 40);
    timers.advance(50);
    assert.equal(flushed[2]!.firstChangeAt, 40, 'the trailing flush');
    timers.advance(100);
    c.addReconcile(true);
    assert.equal(flushed[3]!.firstChangeAt, 190, 'a lost watch is a change known to wait');
  });

  it('a burst short of maxMs gives at most two flushes, however many events it has', () => {
    const { c, timers, flushed } = collect(50, 500);
    for (let i = 0; i < 40; i++) {
      c.add(`f${i}`);
      timers.advance(10);
    }
    timers.advance(1000);
    assert.equal(flushed.length, 2);
    assert.deepEqual(pathsOf(flushed[0]), ['f0']);
    assert.equal(pathsOf(flushed[1]).length, 39);
  });

  it('a single event gives a single flush; the next one after a quiet period leads again', () => {
    const { c, timers, flushed } = collect(50, 500);
    c.add('x');
    timers.advance(1000);
    assert.equal(flushed.length, 1);
    c.add('y');
    assert.equal(flushed.length, 2);
    assert.deepEqual(pathsOf(flushed[1]), ['y']);
    // 49 ms after y: still y's burst, so z waits for its trailing flush.
    timers.advance(49);
    c.add('z');
    assert.equal(flushed.length, 2);
    timers.advance(50);
    assert.deepEqual(pathsOf(flushed[2]), ['z']);
  });

  it('flushes at maxMs after the first pending event even while writes keep coming', () => {
    const { c, timers, flushed } = collect(50, 500);
    for (let t = 0; t < 1000; t += 10) {
      c.add(`f${t}`);
      timers.advance(10);
    }
    assert.equal(flushed.length, 2);
    assert.equal(flushed[0]!.at, 0);
    assert.equal(flushed[1]!.at, 510);
  });

  it('retried paths never flush at once: they join the burst under way, or wait for quiet', () => {
    const { c, timers, flushed } = collect(50, 500);
    c.add('a');
    timers.advance(10);
    c.retry(['a']);
    assert.equal(flushed.length, 1);
    timers.advance(40);
    assert.equal(flushed.length, 2, 'the retry went out with the trailing flush of the burst');
    assert.deepEqual(pathsOf(flushed[1]), ['a']);
    timers.advance(1000);
    c.retry(['b']);
    assert.equal(flushed.length, 2, 'a retry outside a burst waits for quiet');
    // An event while the retry waits joins it: the file is still being written.
    timers.advance(10);
    c.add('c');
    assert.equal(flushed.length, 2);
    timers.advance(50);
    assert.equal(flushed.length, 3);
    assert.deepEqual(pathsOf(flushed[2]), ['b', 'c']);
  });

  it('a reconcile goes out at once and starts no burst; during a burst it absorbs the paths pending', () => {
    const { c, timers, flushed } = collect(50, 500);
    c.addReconcile();
    assert.equal(flushed.length, 1);
    assert.equal(flushed[0]!.scope, 'reconcile');
    c.add('a');
    assert.equal(flushed.length, 2, 'the first write after a reconcile still leads');
    assert.deepEqual(pathsOf(flushed[1]), ['a']);
    c.add('b');
    c.addReconcile();
    assert.equal(flushed.length, 2);
    timers.advance(50);
    assert.equal(flushed.length, 3);
    assert.equal(flushed[2]!.scope, 'reconcile');
  });

  it('collapses into a reconcile past maxPaths instead of growing', () => {
    const { c, timers, flushed } = collect(50, 500, 100);
    for (let i = 0; i < 1000; i++) c.add(`p${i}`);
    timers.advance(50);
    assert.equal(flushed.length, 2);
    assert.equal(flushed[1]!.scope, 'reconcile');
  });

  it('flush() with nothing pending does nothing; close() drops pending work', () => {
    const { c, timers, flushed } = collect(50, 500);
    c.flush();
    assert.equal(flushed.length, 0);
    c.add('x');
    c.add('y');
    c.close();
    timers.advance(1000);
    assert.equal(flushed.length, 1);
    assert.equal(c.pending, false);
    // A ship still in flight may hand paths back after close(): nothing is kept, nothing flushes.
    c.retry(['z']);
    c.add('w');
    timers.advance(1000);
    assert.equal(flushed.length, 1);
    assert.equal(c.pending, false);
  });
});

describe('mergeScopes', () => {
  it('unions path sets and lets reconcile absorb everything', () => {
    assert.deepEqual([...(mergeScopes(new Set(['a']), new Set(['b'])) as Set<string>)].sort(), ['a', 'b']);
    assert.equal(mergeScopes(new Set(['a']), 'reconcile'), 'reconcile');
    assert.equal(mergeScopes('reconcile', new Set(['a'])), 'reconcile');
    assert.equal(mergeScopes(new Set(['a', 'b']), new Set(['c']), 2), 'reconcile');
    assert.equal(mergeScopes(null, 'reconcile'), 'reconcile');
  });
});
