import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { pollDelayMs } from '../../../src/puller/poll-schedule.js';

describe('pollDelayMs', () => {
  it('counts the interval from the poll\'s start', () => {
    assert.equal(pollDelayMs(250, 4), 246);
    assert.equal(pollDelayMs(20, 15.5), 4.5);
  });

  it('polls again at once after a poll as long as the interval or longer', () => {
    assert.equal(pollDelayMs(20, 20), 0);
    assert.equal(pollDelayMs(20, 3_000), 0);
  });

  it('waits the whole interval when the poll\'s length is not a length', () => {
    assert.equal(pollDelayMs(250, Number.NaN), 250);
    assert.equal(pollDelayMs(250, -1), 250);
  });
});
