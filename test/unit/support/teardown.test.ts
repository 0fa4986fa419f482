// The integration fixtures' teardown (test/support/teardown.ts): what was started is stopped last first, every step
// runs even when one fails, and a setup that fails half-way stops what it had started before its error is rethrown.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { setUpOrTearDown, Teardown } from '../../support/teardown.js';

describe('fixture teardown', () => {
  it('runs every step, last first, once, and reports all that failed', async () => {
    const ran: string[] = [];
    const t = new Teardown();
    t.defer(() => ran.push('s3'));
    t.defer(async () => {
      ran.push('engine');
      await Promise.resolve();
      throw new Error('engine would not stop');
    });
    t.defer(() => ran.push('puller'));
    t.defer(() => {
      ran.push('proxy');
      throw new Error('proxy would not close');
    });
    const failed = await t.run().then(() => null, (e: unknown) => e);
    assert.ok(failed instanceof AggregateError, String(failed));
    assert.equal(failed.message, 'cleanup failed');
    assert.deepEqual((failed.errors as Error[]).map((e) => e.message), ['proxy would not close', 'engine would not stop']);
    assert.deepEqual(ran, ['proxy', 'puller', 'engine', 's3']);
    await t.run();
    assert.deepEqual(ran, ['proxy', 'puller', 'engine', 's3'], 'a second run stops nothing again');
  });

  it('a setup that succeeds hands its teardown on: nothing is stopped yet', async () => {
    const ran: string[] = [];
    const fixture = await setUpOrTearDown((t) => {
      t.defer(() => ran.push('base'));
      return Promise.resolve({ close: () => t.run() });
    });
    assert.deepEqual(ran, []);
    await fixture.close();
    assert.deepEqual(ran, ['base']);
  });

  it('a setup that fails half-way stops what it started and rethrows its own error', async () => {
    const ran: string[] = [];
    const boom = new Error('engine did not start');
    await assert.rejects(setUpOrTearDown((t) => {
      t.defer(() => ran.push('base'));
      t.defer(() => ran.push('s3'));
      return Promise.reject(boom);
    }), (e: unknown) => e === boom);
    assert.deepEqual(ran, ['s3', 'base']);
  });

  it('a setup that fails half-way and whose cleanup fails too reports both, the setup error first', async () => {
    const ran: string[] = [];
    const boom = new Error('engine did not start');
    const failed = await setUpOrTearDown((t) => {
      t.defer(() => ran.push('base'));
      t.defer(() => {
        throw new Error('s3 would not close');
      });
      return Promise.reject(boom);
    }).then(() => null, (e: unknown) => e);
    assert.ok(failed instanceof AggregateError, String(failed));
    assert.match(failed.message, /setup failed \(engine did not start\), and its cleanup too/);
    assert.equal(failed.errors[0], boom);
    assert.deepEqual((failed.errors as Error[]).slice(1).map((e) => e.message), ['s3 would not close']);
    assert.deepEqual(ran, ['base'], 'the steps after a failed one still ran');
  });
});
