// KeyedMutex: operations on one key run one at a time in arrival order, other keys are not held up, a failing
// operation releases the key, and an idle mutex keeps no entry.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { KeyedMutex } from '../../../src/store/keyed-mutex.js';

/** A promise the test settles by hand, to hold an operation open exactly as long as it needs. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

describe('KeyedMutex', () => {
  it('runs operations on one key one at a time, in order', async () => {
    const m = new KeyedMutex();
    const log: string[] = [];
    let running = 0;
    const op = (name: string) => async (): Promise<string> => {
      running++;
      assert.equal(running, 1, `${name} overlapped another operation`);
      log.push(`${name} start`);
      // Several turns of the event loop inside the critical section.
      for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
      log.push(`${name} end`);
      running--;
      return name;
    };
    const results = await Promise.all(['a', 'b', 'c'].map((n) => m.run('k', op(n))));
    assert.deepEqual(results, ['a', 'b', 'c']);
    assert.deepEqual(log, ['a start', 'a end', 'b start', 'b end', 'c start', 'c end']);
    assert.equal(m.size, 0);
  });

  it('does not hold up other keys', async () => {
    const m = new KeyedMutex();
    const held = gate();
    const first = m.run('a', () => held.promise);
    // Finishes while "a" is still held: it would deadlock the test if keys shared a queue.
    assert.equal(await m.run('b', () => Promise.resolve('b done')), 'b done');
    assert.equal(m.size, 1);
    held.open();
    await first;
    assert.equal(m.size, 0);
  });

  it('releases the key when an operation throws', async () => {
    const m = new KeyedMutex();
    await assert.rejects(m.run('k', () => Promise.reject(new Error('boom'))), /boom/);
    const queued = [m.run('k', () => Promise.reject(new Error('again'))), m.run('k', () => Promise.resolve(7))];
    await assert.rejects(queued[0] as Promise<unknown>, /again/);
    assert.equal(await queued[1], 7);
    assert.equal(m.size, 0);
  });

  it('keeps one entry per busy key only', async () => {
    const m = new KeyedMutex();
    const held = gate();
    const ops = Array.from({ length: 100 }, (_, i) => m.run(`k${i % 10}`, () => held.promise));
    assert.equal(m.size, 10);
    held.open();
    await Promise.all(ops);
    assert.equal(m.size, 0);
  });
});
