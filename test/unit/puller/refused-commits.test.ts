// The stager's memory of commits it gave up on: a refusal is for good, a failed download backs off (doubling to a
// cap), an explicit poll ignores the backoff but never a refusal, and memory is bounded.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { firstBackoffMs, maxBackoffMs, maxRemembered, RefusedCommits } from '../../../src/puller/refused-commits.js';

describe('RefusedCommits', () => {
  it('backs a failed download off, doubling up to the cap, and forgets it once staged', () => {
    let now = 1_000_000;
    const r = new RefusedCommits(() => now);
    assert.equal(r.verdict('a', 'd1', false), null);
    const waits: number[] = [];
    for (let i = 0; i < 8; i++) {
      const at = r.failed('a', 'd1', 'does not match');
      waits.push(at - now);
      const v = r.verdict('a', 'd1', false);
      assert.equal(v?.kind, 'backoff');
      assert.equal(r.verdict('a', 'd1', true), null, 'an explicit poll tries at once');
      assert.equal(r.verdict('b', 'd1', false), null, 'per container');
      now = at - 1;
      assert.equal(r.verdict('a', 'd1', false)?.kind, 'backoff');
      now = at;
      assert.equal(r.verdict('a', 'd1', false), null, 'due again');
    }
    assert.deepEqual(waits, [firstBackoffMs, 2 * firstBackoffMs, 4 * firstBackoffMs, 8 * firstBackoffMs, 16 * firstBackoffMs, maxBackoffMs, maxBackoffMs, maxBackoffMs]);
    r.staged('a', 'd1');
    assert.equal(r.verdict('a', 'd1', false), null);
    r.failed('a', 'd1', 'again');
    assert.equal(r.failed('a', 'd1', 'again') - now, 2 * firstBackoffMs, 'counted afresh after a success');
  });

  it('keeps a refusal for good, also for an explicit poll and after a later failure', () => {
    const r = new RefusedCommits(() => 0);
    r.refuse('a', 'd', 'hostile');
    assert.deepEqual(r.verdict('a', 'd', true), { kind: 'refused', reason: 'hostile' });
    r.failed('a', 'd', 'io');
    assert.deepEqual(r.verdict('a', 'd', false), { kind: 'refused', reason: 'hostile' });
  });

  it('forgets the oldest beyond its bound', () => {
    const r = new RefusedCommits(() => 0);
    for (let i = 0; i <= maxRemembered; i++) r.refuse('a', `d${i}`, 'x');
    assert.equal(r.size, maxRemembered);
    assert.equal(r.verdict('a', 'd0', false), null);
    assert.equal(r.verdict('a', `d${maxRemembered}`, false)?.kind, 'refused');
  });
});
