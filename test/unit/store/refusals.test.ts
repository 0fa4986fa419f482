// The refusal register behind `signatures.refused` in the status: logged once per key and reason, counted, cleared by
// an accepted read, bounded in memory however many keys a bucket writer forges.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { createLogger } from '../../../src/log/logger.js';
import { Refusals } from '../../../src/store/refusals.js';

function collected(): { refusals: Refusals; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  return { refusals: new Refusals(createLogger({ level: 'debug', write: (l) => lines.push(JSON.parse(l) as Record<string, unknown>) })), lines };
}

describe('Refusals', () => {
  it('logs a key once per reason, counts every read, and logs again when the reason changes', () => {
    const { refusals, lines } = collected();
    for (let i = 0; i < 5; i++) refusals.note('g/gen/2/claim.json', 'claim', 'not signed');
    assert.equal(lines.length, 1);
    assert.equal(lines[0]?.['level'], 'error');
    assert.equal(lines[0]?.['key'], '"g/gen/2/claim.json"');
    refusals.note('g/gen/2/claim.json', 'claim', 'signature does not verify');
    assert.equal(lines.length, 2);
    const view = refusals.view();
    assert.equal(view.total, 6);
    assert.deepEqual(view.recent.map((r) => [r.key, r.reason, r.count]), [['g/gen/2/claim.json', 'signature does not verify', 1]]);
  });

  it('an accepted read clears the key (logged once); the view lists the newest first', () => {
    const { refusals, lines } = collected();
    refusals.note('a', 'head', 'x');
    refusals.note('b', 'spec', 'y');
    refusals.note('a', 'head', 'x');
    assert.deepEqual(refusals.view().recent.map((r) => r.key), ['a', 'b']);
    refusals.clear('a');
    refusals.clear('a');
    assert.deepEqual(refusals.view().recent.map((r) => r.key), ['b']);
    assert.equal(lines.filter((l) => l['msg'] === 'bucket object accepted again').length, 1);
  });

  it('keeps at most 100 keys and shows 20, however many are forged', () => {
    const { refusals } = collected();
    for (let i = 0; i < 10_000; i++) refusals.note(`g/gen/${i}/head.json`, 'head', 'not signed');
    const view = refusals.view();
    assert.equal(view.total, 10_000);
    assert.equal(view.recent.length, 20);
    assert.equal(view.recent[0]?.key, 'g/gen/9999/head.json');
    // The oldest were forgotten: a read of one counts as new again.
    refusals.note('g/gen/0/head.json', 'head', 'not signed');
    assert.equal(refusals.view().recent[0]?.count, 1);
  });
});
