// Key layout parsing: a listed key counts only when it is exactly a key we would have built.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import fc from 'fast-check';

import { asDigest, formatSeq, KeyLayout, type Digest, type Generation, type Seq } from '../../../src/store/index.js';

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

  it('builds and parses claim keys; a generation holding only a claim counts', () => {
    assert.equal(layout.claimKey(g(8)), 'tl/pair/gen/8/claim.json');
    fc.assert(
      fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), (gen) => {
        assert.equal(layout.parseGenerationKey(layout.claimKey(g(gen))), gen);
      }),
    );
    const gp = 'tl/pair/gen/';
    for (const k of ['1/claim.json.tmp', '1/Claim.json', '1/claim.JSON', '1/claim.json/x', '1/claim', '01/claim.json', '1/journal/claim.json', '1/claims.json',
      '1/claim.json\0', '1/ claim.json', '../1/claim.json', '1/../claim.json', '9007199254740992/claim.json']) {
      assert.equal(layout.parseGenerationKey(gp + k), null, JSON.stringify(k));
    }
  });

  it('builds and parses divergent-tail keys, for any host, generation, container and digest', () => {
    const host = fc.stringMatching(/^[A-Za-z0-9._-]{1,64}$/).filter((h) => h !== '.' && h !== '..');
    const container = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/);
    const digest = fc.stringMatching(/^[0-9a-f]{64}$/).map((d) => d as Digest);
    fc.assert(
      fc.property(host, fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), container, digest, (h, gen, c, d) => {
        const parts = { host: h, generation: g(gen), container: c, digest: d };
        const key = layout.divergentKey(parts);
        assert.ok(key.startsWith(layout.divergentHostPrefix(h)));
        assert.deepEqual(layout.parseDivergentKey(key), parts);
      }),
    );
    const d = asDigest('ab'.repeat(32));
    assert.equal(layout.divergentKey({ host: 'host-a', generation: g(3), container: 'web', digest: d }), `tl/pair/divergent/host-a/3/web/${d}.json`);
  });

  it('refuses hostile divergent-tail keys, and refuses to build keys from hostile parts', () => {
    const d = 'ab'.repeat(32);
    const dp = 'tl/pair/divergent/';
    const hostile = [
      `../3/web/${d}.json`, `./3/web/${d}.json`, `host-a/../web/${d}.json`, `host-a/3/../${d}.json`, `host-a/3/web/../${d}.json`,
      `host-a/03/web/${d}.json`, `host-a/-3/web/${d}.json`, `host-a/3/-web/${d}.json`, `host-a/3/web/${d.toUpperCase()}.json`,
      `host-a/3/web/${d}`, `host-a/3/web/${d}.json.tmp`, `host-a/3/web/${d.slice(2)}.json`, `host-a/3/web/sub/${d}.json`,
      `host-a/3/${d}.json`, `host a/3/web/${d}.json`, `host-a/3/web/${d}.json\0`, `/host-a/3/web/${d}.json`, `host-a//3/web/${d}.json`,
      `${'h'.repeat(65)}/3/web/${d}.json`, `host-a/9007199254740992/web/${d}.json`, `host-a/3/web/record.json`, '',
    ];
    for (const k of hostile) assert.equal(layout.parseDivergentKey(dp + k), null, JSON.stringify(k));
    assert.equal(layout.parseDivergentKey(`other/${dp}host-a/3/web/${d}.json`), null);
    const good = { host: 'host-a', generation: g(3), container: 'web', digest: asDigest(d) };
    for (const bad of [{ host: '..' }, { host: '.' }, { host: 'a/b' }, { host: '' }, { container: '../x' }, { generation: g(-1) }, { generation: g(1.5) }, { digest: 'xyz' as Digest }]) {
      assert.throws(() => layout.divergentKey({ ...good, ...bad }), TypeError, JSON.stringify(bad));
    }
    assert.throws(() => layout.divergentHostPrefix('..'), TypeError);
  });
});
