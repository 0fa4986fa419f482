import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  ancestorsOf, comparePaths, opaquePathFor, relPathIsExcluded, relPathProblem, tarPathMeaning, whiteoutPathFor,
} from '../../../src/changeset/paths.js';

describe('relPathProblem', () => {
  it('accepts ordinary relative paths', () => {
    for (const p of ['etc/app.conf', 'a', 'x y/ü/.hidden', '...', 'a/..b', 'n'.repeat(255)]) assert.equal(relPathProblem(p, 4096), null, p);
  });
  it('refuses what could escape or confuse', () => {
    const bad: Array<[string, RegExp]> = [
      ['', /empty/], ['/etc/x', /absolute/], ['../x', /'\.\.'/], ['a/../../x', /'\.\.'/], ['a/./b', /'\.'/], ['.', /'\.'/],
      ['a//b', /empty component/], ['a/', /empty component/], ['a\0b', /NUL/], ['n'.repeat(256), /name longer/],
      ['a/'.repeat(3000) + 'b', /path longer/], ['bad\uFFFD', /UTF-8/],
    ];
    for (const [p, why] of bad) assert.match(relPathProblem(p, 4096) ?? 'accepted', why, JSON.stringify(p.slice(0, 40)));
  });
});

describe('whiteout naming', () => {
  it('maps deletions and opaque dirs to OCI names', () => {
    assert.equal(whiteoutPathFor('etc/app.conf'), 'etc/.wh.app.conf');
    assert.equal(whiteoutPathFor('top'), '.wh.top');
    assert.equal(opaquePathFor('var/lib'), 'var/lib/.wh..wh..opq');
  });
  it('reads them back', () => {
    assert.deepEqual(tarPathMeaning('etc/.wh.app.conf'), { kind: 'whiteout', path: 'etc/.wh.app.conf', target: 'etc/app.conf' });
    assert.deepEqual(tarPathMeaning('.wh.top'), { kind: 'whiteout', path: '.wh.top', target: 'top' });
    assert.deepEqual(tarPathMeaning('var/lib/.wh..wh..opq'), { kind: 'opaque', path: 'var/lib/.wh..wh..opq', dir: 'var/lib' });
    assert.deepEqual(tarPathMeaning('etc/.whx'), { kind: 'plain', path: 'etc/.whx' });
  });
  it('refuses malformed whiteouts', () => {
    for (const p of ['d/.wh.', 'd/.wh..', 'd/.wh.a/b', 'd/.wh..wh.x', '.wh..wh..opq/x', 'd/.wh..wh..opqx']) {
      assert.equal(typeof tarPathMeaning(p), 'string', p);
    }
  });
});

describe('sorting', () => {
  it('orders by UTF-8 bytes with every parent before its children', () => {
    const paths = ['b', 'a/b', 'a', 'a-b', 'ü', 'z', 'a/.wh..wh..opq', 'a/.wh.x', 'a/B', 'A'];
    const sorted = [...paths].sort(comparePaths);
    assert.deepEqual(sorted, ['A', 'a', 'a-b', 'a/.wh..wh..opq', 'a/.wh.x', 'a/B', 'a/b', 'b', 'z', 'ü']);
    for (const p of sorted) for (const anc of ancestorsOf(p)) if (sorted.includes(anc)) assert.ok(sorted.indexOf(anc) < sorted.indexOf(p));
  });
  it('lists ancestors top-down', () => {
    assert.deepEqual(ancestorsOf('a/b/c'), ['a', 'a/b']);
    assert.deepEqual(ancestorsOf('a'), []);
  });
});

describe('relPathIsExcluded', () => {
  const ex = ['/etc/hosts', 'etc/resolv.conf', '.dockerenv', 'var/cache/**', 'tmp/*.sock', 'proc'];
  it('matches exact paths and what is under them', () => {
    for (const p of ['etc/hosts', 'etc/resolv.conf', '.dockerenv', 'var/cache', 'var/cache/apt/x', 'tmp/a.sock', 'proc/1/x']) assert.ok(relPathIsExcluded(p, ex), p);
  });
  it('leaves everything else', () => {
    for (const p of ['etc/hostname2', 'etc/hosts.allow', 'var/cached', 'tmp/a.sock.d2x/../', 'tmp/x/a.sock', 'etc']) assert.ok(!relPathIsExcluded(p, ex), p);
    assert.ok(!relPathIsExcluded('anything', []));
  });
});
