// The reserved volumes dir of a container's changeset: which tree a tar path lies in, and OCI whiteout naming read
// inside a volume.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { treeOf, volumeTarPath, volumesDir } from '../../../src/changeset/index.js';
import { treePathMeaning } from '../../../src/changeset/volume-paths.js';

function problemOf(m: ReturnType<typeof treePathMeaning>): string {
  assert.equal(typeof m, 'string', `refused: ${JSON.stringify(m)}`);
  return m as string;
}

describe('volume paths', () => {
  it('splits tar paths into the upper dir, the reserved dir and one volume', () => {
    assert.deepEqual(treeOf('etc/app.conf'), { root: 'upper', rel: 'etc/app.conf' });
    assert.deepEqual(treeOf(volumesDir), { root: 'volumes' });
    assert.deepEqual(treeOf(volumeTarPath('data', '')), { root: 'volume', key: 'data', rel: '' });
    assert.deepEqual(treeOf(volumeTarPath('data', 'a/b')), { root: 'volume', key: 'data', rel: 'a/b' });
    // A name that only starts like the reserved dir is the upper's (and never shipped: it starts with .wh.).
    assert.deepEqual(treeOf(`${volumesDir}x/y`), { root: 'upper', rel: `${volumesDir}x/y` });
  });

  it('reads whiteouts inside a volume as paths of that volume, and refuses what names no volume', () => {
    assert.deepEqual(treePathMeaning(volumeTarPath('data', 'certs/.wh.old')), { kind: 'whiteout', path: volumeTarPath('data', 'certs/.wh.old'), target: volumeTarPath('data', 'certs/old') });
    assert.deepEqual(treePathMeaning(volumeTarPath('data', '')), { kind: 'plain', path: volumeTarPath('data', '') });
    assert.deepEqual(treePathMeaning(volumeTarPath('data', 'd/.wh..wh..opq')), { kind: 'opaque', path: volumeTarPath('data', 'd/.wh..wh..opq'), dir: volumeTarPath('data', 'd') });
    assert.match(problemOf(treePathMeaning(volumesDir)), /reserved volumes dir/);
    assert.match(problemOf(treePathMeaning(`${volumesDir}/.wh.data`)), /not a Docker volume name/);
    assert.match(problemOf(treePathMeaning(`${volumesDir}/.wh..wh..opq`)), /not a Docker volume name/);
    assert.match(problemOf(treePathMeaning(volumeTarPath('data', '.wh.x/y'))), /whiteout name used as a directory/);
    assert.deepEqual(treePathMeaning('etc/.wh.passwd'), { kind: 'whiteout', path: 'etc/.wh.passwd', target: 'etc/passwd' });
  });
});
