// The gate between GC and the writers of one process: a doomed key written again is rescued; a write of a key being
// deleted waits for the deletion; keys no one doomed pass at once.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { DeleteGate } from '../../../src/store/delete-gate.js';

describe('DeleteGate', () => {
  it('lets writes of keys no one doomed pass and forgets doomed keys once released', async () => {
    const gate = new DeleteGate();
    assert.equal(await gate.beforeWrite('k'), false);
    const doom = gate.doom(['k']);
    doom.release();
    assert.equal(await gate.beforeWrite('k'), false);
  });

  it('a doomed key written before the deletion is rescued: not deleted', async () => {
    const gate = new DeleteGate();
    const doom = gate.doom(['a', 'b', 'c']);
    assert.equal(await gate.beforeWrite('b'), true, 'the writer must PUT it, not trust that it is there');
    const deleted: string[] = [];
    assert.deepEqual(await doom.run((keys) => Promise.resolve((deleted.push(...keys), keys))), ['a', 'c']);
    assert.deepEqual(deleted, ['a', 'c']);
    assert.equal(await gate.beforeWrite('b'), false, 'released with the run');
  });

  it('a write of a key being deleted waits until the deletion is done, then PUTs', async () => {
    const gate = new DeleteGate();
    const doom = gate.doom(['a']);
    const order: string[] = [];
    let finish!: () => void;
    const running = doom.run(async (keys) => {
      order.push('delete sent');
      await new Promise<void>((resolve) => (finish = resolve));
      order.push('delete done');
      return keys;
    });
    const write = gate.beforeWrite('a').then((mustPut) => order.push(`write (${mustPut ? 'put' : 'may skip'})`));
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(order, ['delete sent']);
    finish();
    await Promise.all([running, write]);
    assert.deepEqual(order, ['delete sent', 'delete done', 'write (put)']);
  });

  it('a failed deletion releases the keys and lets waiting writers go', async () => {
    const gate = new DeleteGate();
    const doom = gate.doom(['a']);
    const failing = doom.run(() => Promise.reject(new Error("503")));
    const write = gate.beforeWrite('a');
    await assert.rejects(failing, /503/);
    assert.equal(await write, true);
    assert.equal(await gate.beforeWrite('a'), false);
  });

  it('two runs dooming the same key: a write rescues it from both, and releasing one leaves the other\'s doom', async () => {
    const gate = new DeleteGate();
    const first = gate.doom(['a', 'b']);
    const second = gate.doom(['a', 'c']);
    first.release();
    // Before the fix the gate held one set of keys: the first release forgot 'a' although the second still doomed it.
    assert.equal(await gate.beforeWrite('a'), true, 'still doomed by the second run');
    assert.deepEqual(await second.run((keys) => Promise.resolve(keys)), ['c']);

    const third = gate.doom(['x']);
    const fourth = gate.doom(['x']);
    assert.equal(await gate.beforeWrite('x'), true);
    assert.deepEqual(await third.run((keys) => Promise.resolve(keys)), []);
    assert.deepEqual(await fourth.run((keys) => Promise.resolve(keys)), []);
  });

  it('a write waits for every overlapping deletion of its key, the second one started while it waited', async () => {
    const gate = new DeleteGate();
    const order: string[] = [];
    const one = gate.doom(['a']);
    const two = gate.doom(['a']);
    let finishOne!: () => void;
    let finishTwo!: () => void;
    const runOne = one.run(async (keys) => {
      await new Promise<void>((resolve) => (finishOne = resolve));
      order.push('one deleted');
      return keys;
    });
    const write = gate.beforeWrite('a').then((mustPut) => order.push(`write (${mustPut ? 'put' : 'may skip'})`));
    await new Promise((resolve) => setImmediate(resolve));
    // The second run starts deleting while the write waits for the first: the write must wait for it too, or it
    // would PUT the key and see the second run delete it.
    const runTwo = two.run(async (keys) => {
      await new Promise<void>((resolve) => (finishTwo = resolve));
      order.push(`two deleted ${keys.join(',')}`);
      return keys;
    });
    finishOne();
    await runOne;
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(order, ['one deleted']);
    finishTwo();
    await Promise.all([runTwo, write]);
    assert.deepEqual(order, ['one deleted', 'two deleted a', 'write (put)']);
  });

  it('a doom runs once', async () => {
    const gate = new DeleteGate();
    const d = gate.doom(['a']);
    await d.run((keys) => Promise.resolve(keys));
    await assert.rejects(d.run((keys) => Promise.resolve(keys)), /released or has run/);
  });
});
