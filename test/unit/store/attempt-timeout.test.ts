// The small GET's time bound: it aborts a hung attempt as AbortSignal.timeout would, and leaves no timer behind an
// attempt that ended (the idle standby's wake-up two seconds after every head poll).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { withAttemptTimeout } from '../../../src/store/attempt-timeout.js';
import { isRetryableS3Error } from '../../../src/store/index.js';

const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

describe('withAttemptTimeout', () => {
  it('aborts an attempt that outlasts it with a TimeoutError the retry rules retry', async () => {
    const err = await withAttemptTimeout(20, (signal) => new Promise((_, reject) => {
      signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true });
    })).then(() => null, (e: unknown) => e);
    assert.ok(err instanceof DOMException);
    assert.equal(err.name, 'TimeoutError');
    assert.equal(isRetryableS3Error(err), true);
  });

  it('clears its timer once the attempt settles, resolved or rejected', async () => {
    const before = timers();
    assert.equal(await withAttemptTimeout(60_000, () => Promise.resolve(7)), 7);
    await assert.rejects(withAttemptTimeout(60_000, () => Promise.reject(new Error('refused'))), /refused/);
    assert.equal(timers(), before);
    // While an attempt runs its timer is there (what the count above would see had it stayed).
    let finish = (): void => undefined;
    const running = withAttemptTimeout(60_000, () => new Promise<void>((resolve) => { finish = resolve; }));
    assert.equal(timers(), before + 1);
    finish();
    await running;
    assert.equal(timers(), before);
  });

  it('hands the attempt a signal not aborted while it runs in time', async () => {
    const seen = await withAttemptTimeout(1_000, (signal) => Promise.resolve(signal.aborted));
    assert.equal(seen, false);
  });
});
