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

describe('BurstCollector', () => {
  it('flushes once after the quiet period with every path of the burst', () => {
    const { c, timers, flushed } = collect(50, 500);
    c.add('etc/a');
    timers.advance(20);
    c.add('etc/b');
    timers.advance(49);
    assert.equal(flushed.length, 0);
    timers.advance(1);
    assert.equal(flushed.length, 1);
    assert.deepEqual([...(flushed[0]!.scope as Set<string>)].sort(), ['etc/a', 'etc/b']);
    assert.equal(flushed[0]!.firstEventAt, 0);
    assert.equal(flushed[0]!.at, 70);
  });

  it('a scheduled reconcile is not a change seen (the replication lag counts from changes); a path event or a lost watch is', () => {
    const { c, timers, flushed } = collect(50, 500);
    c.addReconcile();
    assert.equal(c.firstChangeAt, null);
    timers.advance(30);
    c.add('etc/a');
    assert.equal(c.firstChangeAt, 30);
    timers.advance(50);
    assert.equal(flushed[0]!.firstEventAt, 0);
    assert.equal(flushed[0]!.firstChangeAt, 30);
    assert.equal(c.firstChangeAt, null, 'handed over with the burst');
    c.addReconcile();
    timers.advance(50);
    assert.equal(flushed[1]!.firstChangeAt, null);
    timers.advance(10);
    c.addReconcile(true);
    assert.equal(c.firstChangeAt, 140);
  });

  it('flushes at maxMs after the first event even while writes keep coming', () => {
    const { c, timers, flushed } = collect(50, 500);
    for (let t = 0; t < 1000; t += 10) {
      c.add(`f${t}`);
      timers.advance(10);
    }
    assert.ok(flushed.length >= 2, `expected at least 2 flushes, got ${flushed.length}`);
    assert.equal(flushed[0]!.at, 500);
  });

  it('collapses into a reconcile past maxPaths instead of growing', () => {
    const { c, timers, flushed } = collect(50, 500, 100);
    for (let i = 0; i < 1000; i++) c.add(`p${i}`);
    timers.advance(50);
    assert.equal(flushed.length, 1);
    assert.equal(flushed[0]!.scope, 'reconcile');
  });

  it('flush() with nothing pending does nothing; close() drops pending work', () => {
    const { c, timers, flushed } = collect(50, 500);
    c.flush();
    c.add('x');
    c.close();
    timers.advance(1000);
    assert.equal(flushed.length, 0);
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
