// The docker-archive the standby loads a checked image from: its manifest, the tag it gets, and the stream of files.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';

import { Parser } from 'tar';

import { dockerArchiveManifest, packDockerArchive, repoTagOf } from '../../../src/docker/index.js';

describe('docker-archive of a checked image', () => {
  it('tags an image as it was run (":latest" when no tag), never by an id or a digest reference', () => {
    assert.equal(repoTagOf('busybox'), 'busybox:latest');
    assert.equal(repoTagOf('busybox:1.36'), 'busybox:1.36');
    assert.equal(repoTagOf('registry.local:5000/team/app'), 'registry.local:5000/team/app:latest');
    assert.equal(repoTagOf('registry.local:5000/team/app:v2'), 'registry.local:5000/team/app:v2');
    for (const ref of [null, '', 'sha256:' + 'a'.repeat(64), 'app@sha256:' + 'b'.repeat(64), 'a'.repeat(64), 'UPPER:x', '../x', 'a b']) assert.equal(repoTagOf(ref), null, String(ref));
  });

  it('writes the legacy manifest: config, tags (null for none), layers bottom first (a layer may repeat)', () => {
    assert.deepEqual(JSON.parse(dockerArchiveManifest({ config: 'c.json', layers: ['a.tar', 'b.tar', 'a.tar'], repoTags: ['x:1'] })), [{ Config: 'c.json', RepoTags: ['x:1'], Layers: ['a.tar', 'b.tar', 'a.tar'] }]);
    assert.deepEqual(JSON.parse(dockerArchiveManifest({ config: 'c.json', layers: [], repoTags: [] })), [{ Config: 'c.json', RepoTags: null, Layers: [] }]);
  });

  it('streams manifest.json and each file once, and nothing else in the dir', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tl-archive-'));
    try {
      const files = { config: 'c.json', layers: ['a.tar', 'b.tar', 'a.tar'], repoTags: [] };
      await writeFile(join(dir, 'manifest.json'), dockerArchiveManifest(files));
      for (const f of ['c.json', 'a.tar', 'b.tar', 'stray.tar']) await writeFile(join(dir, f), f);
      const seen: string[] = [];
      const parser = new Parser({ onReadEntry: (e) => { seen.push(e.path); e.resume(); } });
      await pipeline(packDockerArchive(dir, files), new Writable({ write: (chunk: Buffer, _e, cb) => { parser.write(chunk); cb(); }, final: (cb) => { parser.end(); cb(); } }));
      assert.deepEqual(seen, ['manifest.json', 'c.json', 'a.tar', 'b.tar']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
