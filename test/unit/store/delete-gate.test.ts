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
    assert.deepEqual(await doom.run((keys) => Promise.resolve(void deleted.push(...keys))), ['a', 'c']);
    assert.deepEqual(deleted, ['a', 'c']);
    assert.equal(await gate.beforeWrite('b'), false, 'released with the run');
  });

  it('a write of a key being deleted waits until the deletion is done, then PUTs', async () => {
    const gate = new DeleteGate();
    const doom = gate.doom(['a']);
    const order: string[] = [];
    let finish!: () => void;
    const running = doom.run(async () => {
      order.push('delete sent');
      await new Promise<void>((resolve) => (finish = resolve));
      order.push('delete done');
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
    const failing = doom.run(() => Promise.reject(new Error('503')));
    const write = gate.beforeWrite('a');
    await assert.rejects(failing, /503/);
    assert.equal(await write, true);
    assert.equal(await gate.beforeWrite('a'), false);
  });
});
