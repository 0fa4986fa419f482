// The image shipper's pace around commits (src/pusher/commit-yield.ts): no wait while nothing is under way, a wait
// while a commit is, bounded so that a container written without pause does not hold a ship back for good.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { CommitYield } from '../../../src/pusher/commit-yield.js';

/** A clock that moves only when the yield sleeps. */
function fakeTime(): { now: () => number; sleep: (ms: number) => Promise<void>; slept: number[] } {
  let t = 1000;
  const slept: number[] = [];
  return {
    now: () => t,
    sleep: (ms) => {
      slept.push(ms);
      t += ms;
      return Promise.resolve();
    },
    slept,
  };
}

describe('CommitYield', () => {
  it('lets a ship go on at once, with no promise, while nothing is under way', () => {
    const y = new CommitYield({ busy: () => false });
    assert.equal(y.turn(), null);
  });

  it('waits while a commit is under way and goes on when it is over', async () => {
    const time = fakeTime();
    let busyFor = 4;
    const y = new CommitYield({ busy: () => busyFor-- > 0, pollMs: 5, maxWaitMs: 1000, ...time });
    const wait = y.turn();
    assert.notEqual(wait, null);
    await wait;
    assert.deepEqual(time.slept, [5, 5, 5], 'looked again every 5 ms until the commit was over');
  });

  it('waits at most maxWaitMs, then runs runMs without looking, then waits again', async () => {
    const time = fakeTime();
    const y = new CommitYield({ busy: () => true, pollMs: 10, maxWaitMs: 100, runMs: 50, ...time });
    await y.turn();
    assert.equal(time.slept.reduce((a, b) => a + b, 0), 100, 'gave way for maxWaitMs');
    assert.equal(y.turn(), null, 'runs without looking right after');
    await time.sleep(49);
    assert.equal(y.turn(), null, 'still within runMs');
    await time.sleep(1);
    assert.notEqual(y.turn(), null, 'waits again after runMs');
  });

  it('rejects a wait when its signal aborts', async () => {
    const ac = new AbortController();
    const y = new CommitYield({ busy: () => true, pollMs: 1, maxWaitMs: 60_000 });
    const wait = y.turn(ac.signal);
    ac.abort(new Error('stopped'));
    await assert.rejects(wait!, /abort|stopped/i);
  });

  it('passes a stream on whole and in order, holding each chunk while a commit is under way', async () => {
    const time = fakeTime();
    // A commit under way at each chunk's turn and one poll after; over at the next.
    let calls = 0;
    const y = new CommitYield({ busy: () => calls++ % 3 !== 2, pollMs: 5, maxWaitMs: 1000, ...time });
    const src = Readable.from(['a', 'b', 'c', 'd'].map((c) => Buffer.from(c)));
    assert.equal(await text(y.pace(src)), 'abcd');
    assert.equal(time.slept.length, 4, 'each of the 4 chunks waited a poll');
    assert.equal(calls, 12);
  });

  it('ends the paced stream with the source\'s error', async () => {
    const y = new CommitYield({ busy: () => false });
    const src = new Readable({ read() { this.destroy(new Error('engine went away')); } });
    await assert.rejects(text(y.pace(src)), /engine went away/);
  });

  it('refuses a non-positive interval', () => {
    assert.throws(() => new CommitYield({ busy: () => false, maxWaitMs: 0 }), /maxWaitMs/);
  });
});
