// Backoff with full jitter and the retry loop: bounded attempts, non-retryable errors stop at once.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { backoffDelay, checkRetryPolicy, withRetries } from '../../../src/store/retry.js';
import { isRetryableS3Error, ObjectTooLargeError } from '../../../src/store/index.js';

describe('backoffDelay', () => {
  const policy = { attempts: 5, baseMs: 100, maxMs: 1000 };
  it('is uniform between 0 and the capped exponential', () => {
    assert.equal(backoffDelay(policy, 0, () => 0), 0);
    assert.equal(backoffDelay(policy, 0, () => 0.999), 99);
    assert.equal(backoffDelay(policy, 2, () => 0.999), 399);
    assert.equal(backoffDelay(policy, 10, () => 0.999), 999);
    assert.equal(backoffDelay(policy, 1000, () => 0.5), 500);
  });
  it('refuses nonsense policies', () => {
    for (const p of [{ attempts: 0, baseMs: 1, maxMs: 1 }, { attempts: 1.5, baseMs: 1, maxMs: 1 }, { attempts: 3, baseMs: -1, maxMs: 1 }, { attempts: 3, baseMs: 10, maxMs: 5 }]) {
      assert.throws(() => checkRetryPolicy(p), TypeError);
    }
  });
});

describe('withRetries', () => {
  const policy = { attempts: 4, baseMs: 0, maxMs: 0 };
  it('retries up to the attempts and then throws the last error', async () => {
    let n = 0;
    await assert.rejects(withRetries(policy, () => { n++; return Promise.reject(new Error(`e${n}`)); }, () => true), /e4/);
    assert.equal(n, 4);
  });
  it('returns as soon as an attempt succeeds', async () => {
    let n = 0;
    assert.equal(await withRetries(policy, () => (++n < 3 ? Promise.reject(new Error('x')) : Promise.resolve(n)), () => true), 3);
  });
  it('stops at a non-retryable error', async () => {
    let n = 0;
    await assert.rejects(withRetries(policy, () => { n++; return Promise.reject(new Error('fatal')); }, () => false), /fatal/);
    assert.equal(n, 1);
  });
});

describe('isRetryableS3Error', () => {
  const http = (status: number, name = 'X'): Error => Object.assign(new Error('m'), { name, $metadata: { httpStatusCode: status } });
  it('retries transport errors, 5xx, 429 and throttling', () => {
    for (const e of [Object.assign(new Error('r'), { code: 'ECONNRESET' }), Object.assign(new Error('t'), { name: 'TimeoutError' }), http(500), http(503, 'SlowDown'), http(429), http(400, 'RequestTimeout')]) {
      assert.equal(isRetryableS3Error(e), true, String(e));
    }
  });
  it('does not retry other 4xx, programming errors or our own errors', () => {
    for (const e of [http(403, 'AccessDenied'), http(404, 'NoSuchKey'), http(400, 'InvalidArgument'), new TypeError('bug'), new ObjectTooLargeError('k', 2, 1)]) {
      assert.equal(isRetryableS3Error(e), false, String(e));
    }
  });
});
