// Puts an image into the bucket as the primary ships it (store/keys.ts imageKey): its config's exact bytes under the
// config digest, each layer tar gzip'd under its diff id. From `docker save` of one engine (either image store: a
// layer saved compressed is gunzipped first). A stand-in for the primary's shipper in tests of the standby's loader.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';

import { extract } from 'tar';

import { dockerCli } from '../../src/lab/engine.js';
import type { BlobStore, KeyLayout } from '../../src/store/index.js';
import { asDigest } from '../../src/store/index.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

export interface ShippedImage {
  configDigest: string;
  diffIds: string[];
  /** The keys written, config first. */
  keys: string[];
  /** Each layer's uncompressed tar, by diff id (to tamper with). */
  layers: Map<string, Buffer>;
}

export async function shipImage(engine: { socketPath: string }, ref: string, store: BlobStore, layout: KeyLayout): Promise<ShippedImage> {
  const work = await mkdtemp(join(tmpdir(), 'tl-ship-image-'));
  try {
    await dockerCli(engine, ['save', '-o', join(work, 'image.tar'), ref], 120_000);
    await extract({ file: join(work, 'image.tar'), cwd: work });
    const manifest = JSON.parse(await readFile(join(work, 'manifest.json'), 'utf8')) as Array<{ Config: string; Layers: string[] }>;
    const entry = manifest[0];
    assert.ok(entry !== undefined, `docker save of ${ref} has no manifest entry`);
    const config = await readFile(join(work, entry.Config));
    const configDigest = `sha256:${sha(config)}`;
    const diffIds = (JSON.parse(config.toString('utf8')) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids;
    const keys = [layout.imageKey(asDigest(sha(config)))];
    await store.put(keys[0]!, config);
    const layers = new Map<string, Buffer>();
    for (const [i, path] of entry.Layers.entries()) {
      const saved = await readFile(join(work, path));
      const tar = saved[0] === 0x1f && saved[1] === 0x8b ? gunzipSync(saved) : saved;
      const diffId = `sha256:${sha(tar)}`;
      assert.equal(diffId, diffIds[i], `layer ${i} of ${ref} is not the diff id its config names`);
      const key = layout.imageKey(asDigest(sha(tar)));
      await store.put(key, gzipSync(tar));
      keys.push(key);
      layers.set(diffId, tar);
    }
    return { configDigest, diffIds, keys, layers };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
