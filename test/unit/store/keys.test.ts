// Key layout parsing: a listed key counts only when it is exactly a key we would have built.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import fc from 'fast-check';

import { formatSeq, KeyLayout, type Generation, type Seq } from '../../../src/store/index.js';

const g = (n: number): Generation => n as Generation;
const layout = new KeyLayout('tl', 'pair');
const jp = 'tl/pair/gen/7/journal/';

describe('KeyLayout', () => {
  it('refuses prefixes and groups that would change the layout', () => {
    for (const p of ['/tl', 'tl/', 'a//b', '../x', 'a/../b', 'a b', 'a\0b']) assert.throws(() => new KeyLayout(p, 'g'), TypeError, p);
    for (const grp of ['', '..', 'a/b', 'x'.repeat(65)]) assert.throws(() => new KeyLayout('tl', grp), TypeError, grp);
    assert.equal(new KeyLayout('', 'g').headKey(g(1)), 'g/gen/1/head.json');
  });

  it('parses journal keys it built, for any seq', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), fc.integer({ min: 0, max: 1e9 }), (s, gen) => {
        assert.equal(layout.parseJournalKey(g(gen), layout.journalKey(g(gen), s as Seq)), s);
        assert.equal(layout.parseGenerationKey(layout.journalKey(g(gen), s as Seq)), gen);
      }),
    );
    assert.equal(formatSeq(42 as Seq), '0000000000000042');
  });

  it('rejects hostile journal keys', () => {
    const hostile = [
      '../../x', '../../../etc/passwd', 'abc.json', '0000000000000001.json/../../x', '0000000000000001.json\0', '\0', '',
      '000000000000001.json', '00000000000000001.json', '+000000000000001.json', '-000000000000001.json', ' 000000000000001.json',
      '0000000000000001.json ', '0000000000000001.json\n', '\n0000000000000001.json', '0000000000000001.JSON', '0000000000000001',
      '\u0660'.repeat(15) + '\u0661.json', '０000000000000001.json', 'sub/0000000000000001.json', '0000000000000000.json',
      '9999999999999999.json', '9007199254740992.json', '0x00000000000001.json', '1e15000000000000.json',
    ];
    for (const k of hostile) assert.equal(layout.parseJournalKey(g(7), jp + k), null, JSON.stringify(k));
    assert.equal(layout.parseJournalKey(g(7), 'tl/pair/gen/8/journal/0000000000000001.json'), null);
    assert.equal(layout.parseJournalKey(g(7), 'other/' + jp + '0000000000000001.json'), null);
    assert.equal(layout.parseJournalKey(g(7), jp + '9007199254740991.json'), Number.MAX_SAFE_INTEGER);
  });

  it('rejects hostile generation keys', () => {
    const gp = 'tl/pair/gen/';
    for (const k of ['01/head.json', '-1/head.json', '1e3/head.json', '1/other.json', '1/head.json.tmp', '1', '1/', '../head.json', '1/../head.json',
      '99999999999999999/head.json', '1\0/head.json', ' 1/head.json', '1/journal/abc.json', '1/journal/0000000000000000.json']) {
      assert.equal(layout.parseGenerationKey(gp + k), null, JSON.stringify(k));
    }
    assert.equal(layout.parseGenerationKey(gp + '0/head.json'), 0);
    assert.equal(layout.parseGenerationKey(gp + '12/head.json'), 12);
  });

  it('parses spec keys with valid container names only', () => {
    const sp = 'tl/pair/containers/';
    assert.equal(layout.parseSpecKey(sp + 'web-1.a_b/spec.json'), 'web-1.a_b');
    for (const k of ['-web/spec.json', '../spec.json', 'a/b/spec.json', 'a/spec.json.bak', '/spec.json', 'a\0/spec.json', 'x'.repeat(129) + '/spec.json']) {
      assert.equal(layout.parseSpecKey(sp + k), null, JSON.stringify(k));
    }
    assert.throws(() => layout.specKey('../../x'), TypeError);
  });
});
