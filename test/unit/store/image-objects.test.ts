// Image objects in the bucket: the shipper's HEAD and PUT through the bucket's delete gate, and the reads, checked while
// they stream: configs by digest and diff ids, layers gunzipped to their declared size and diff id, with nothing left
// behind when refused.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';

import { DeleteGate } from '../../../src/store/delete-gate.js';
import { agreesWithIsize, declaredSize, DEFAULT_MAX_LAYER_BYTES, DirBlobStore, ImageNoRoomError, ImageObjectRefusedError, ImageObjects, KeyLayout, layerByteCap, type BodyObserver, type RangeOptions } from '../../../src/store/index.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe('image objects', () => {
  let dir: string;
  let store: DirBlobStore;
  let images: ImageObjects;
  let gate: DeleteGate;
  let out: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tl-image-objects-'));
    store = new DirBlobStore(join(dir, 'bucket'));
    gate = new DeleteGate();
    images = new ImageObjects(store, new KeyLayout('tl', 'g'), gate);
    out = join(dir, 'out');
    await mkdir(out);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function putLayer(tar: Buffer, stored: Buffer = gzipSync(tar)): Promise<string> {
    const diffId = sha(tar);
    await store.put(images.keyOf(diffId), stored);
    return diffId;
  }

  it('has and put: the shipper\'s HEAD and PUT by digest; a key a GC run doomed counts as missing and is spared by the put', async () => {
    const config = Buffer.from('{"rootfs":{"type":"layers","diff_ids":[]}}');
    const digest = sha(config);
    assert.equal(await images.has(digest), false);
    await images.put(digest, config);
    assert.equal(await images.has(digest), true);
    assert.deepEqual(await images.config(digest, []), config, 'read back under the same key');
    const doom = gate.doom([images.keyOf(digest)]);
    assert.equal(await images.has(digest), false, 'about to be deleted: the shipper must put it again');
    await images.put(digest, config);
    assert.deepEqual(await doom.run((keys) => Promise.resolve(keys)), [], 'rescued from the run');
    assert.equal(await images.has(digest), true);
  });

  it('declaredSize: the trailer\'s size mod 2^32 raised to what the compressed bytes can hold', () => {
    assert.equal(declaredSize(1000, 100), 1000);
    assert.equal(declaredSize(5, 3_000_000_000), 2 ** 32 + 5);
    assert.equal(declaredSize(0, 0), 0);
    // 4 GiB + 1 KiB cannot come out of 65 KiB of gzip: deflate does not compress past about 1032 to 1.
    assert.equal(declaredSize(1024, 65_000), null);
    assert.equal(declaredSize(60_000_000, 65_000), 60_000_000);
  });

  it('a layer over 4 GiB: ISIZE gives a lower bound, the stream is capped by what the gzip can hold, the end agrees mod 2^32', () => {
    const GiB = 2 ** 30;
    // 5 GiB of tar stored as 1 GB of gzip: the trailer says 1 GiB (5 GiB mod 2^32).
    const compressed = 1_000_000_000;
    const isize = (5 * GiB) % 2 ** 32;
    assert.equal(isize, GiB);
    assert.equal(declaredSize(isize, compressed), GiB, 'the least size consistent with ISIZE: a lower bound');
    const cap = layerByteCap(compressed, DEFAULT_MAX_LAYER_BYTES, isize);
    assert.ok(cap >= 5 * GiB, `the stream may go past the 1 GiB ISIZE says (cap ${cap})`);
    assert.equal(agreesWithIsize(5 * GiB, isize), true, 'the 5 GiB layer is accepted at its end');
    assert.equal(agreesWithIsize(GiB, isize), true);
    assert.equal(agreesWithIsize(5 * GiB + 1, isize), false);
    assert.equal(agreesWithIsize(5 * GiB - 1, isize), false);
    // The cap: the largest size the trailer allows within what the compressed bytes can hold (deflate's ~1032:1) and
    // maxBytes: 5 GiB within 6 GiB, and exactly the ISIZE for a gzip too small to reach 4 GiB.
    assert.equal(layerByteCap(compressed, 6 * GiB, isize), 5 * GiB);
    assert.equal(cap % 2 ** 32, isize);
    assert.equal(layerByteCap(65_000, DEFAULT_MAX_LAYER_BYTES, 1000), 1000);
    assert.equal(layerByteCap(65_000, DEFAULT_MAX_LAYER_BYTES, 60_000_000), 60_000_000);
  });

  it('a layer streams in small ranges to its uncompressed file, of its diff id, with progress', async () => {
    const tar = Buffer.concat([randomBytes(300_000), Buffer.alloc(9 * 1024 * 1024)]);
    const diffId = await putLayer(tar);
    const probe = await images.probeLayer(diffId);
    assert.equal(probe.leastBytes, tar.length);
    assert.equal(probe.isize, tar.length);
    const seen: number[] = [];
    const file = join(out, 'good.tar');
    assert.equal(await images.fetchLayer(probe, file, { rangeBytes: 64 * 1024, reserveBytes: 0, onProgress: (n) => seen.push(n) }), tar.length);
    assert.equal(sha(await readFile(file)), diffId);
    assert.equal(seen.at(-1), tar.length);
    await rm(file);
  });

  it('refuses a tampered layer (a byte flipped, gzip\'d again), leaving no file', async () => {
    const tar = randomBytes(50_000);
    const diffId = sha(tar);
    const bad = Buffer.from(tar);
    bad[100] = (bad[100] ?? 0) ^ 1;
    await store.put(images.keyOf(diffId), gzipSync(bad));
    const probe = await images.probeLayer(diffId);
    await assert.rejects(images.fetchLayer(probe, join(out, 'bad.tar'), { reserveBytes: 0 }), (err: unknown) => err instanceof ImageObjectRefusedError && /digest/.test(err.message));
    assert.deepEqual(await readdir(out), []);
  });

  it('refuses a truncated gzip and a bomb that gunzips past its trailer\'s size', async () => {
    const tar = randomBytes(40_000);
    const gz = gzipSync(tar);
    const truncatedId = await putLayer(tar, Buffer.concat([gz.subarray(0, gz.length - 100), gz.subarray(gz.length - 8)]));
    const probe = await images.probeLayer(truncatedId);
    await assert.rejects(images.fetchLayer(probe, join(out, 't.tar'), { reserveBytes: 0 }), ImageObjectRefusedError);

    // 64 MiB of zeros whose trailer is rewritten to say 1 KiB: no gzip of its size holds 4 GiB + 1 KiB, refused at once;
    // rewritten to say 60 MiB: its end does not agree with the trailer (zlib's own length check sees it first); with a max of 1 MiB: stopped at the first byte
    // past it.
    const zeros = Buffer.alloc(64 * 1024 * 1024);
    const bomb = gzipSync(zeros);
    bomb.writeUInt32LE(1024, bomb.length - 4);
    const bombId = await putLayer(zeros, bomb);
    await assert.rejects(images.probeLayer(bombId), /which no gzip of/);
    bomb.writeUInt32LE(60 * 1024 * 1024, bomb.length - 4);
    await store.put(images.keyOf(bombId), bomb);
    const bombProbe = await images.probeLayer(bombId);
    assert.equal(bombProbe.leastBytes, 60 * 1024 * 1024);
    // The trailer's word bounds the stream (a layer this small cannot reach 4 GiB): it stops at the first byte past it.
    let streamed = 0;
    await assert.rejects(
      images.fetchLayer(bombProbe, join(out, 'b.tar'), { reserveBytes: 0, onProgress: (n) => { streamed = n; } }),
      (err: unknown) => err instanceof ImageObjectRefusedError && /more than the 62914560 bytes/.test(err.message),
    );
    assert.ok(streamed <= 60 * 1024 * 1024, `stopped at the trailer's size (${streamed})`);
    bomb.writeUInt32LE(100 * 1024, bomb.length - 4);
    await store.put(images.keyOf(bombId), bomb);
    streamed = 0;
    await assert.rejects(
      images.fetchLayer(await images.probeLayer(bombId), join(out, 'b2.tar'), { reserveBytes: 0, maxBytes: 1024 * 1024, onProgress: (n) => { streamed = n; } }),
      (err: unknown) => err instanceof ImageObjectRefusedError && /more than the 102400 bytes/.test(err.message),
    );
    assert.ok(streamed <= 1024 * 1024, `stopped at the cap (${streamed})`);
    // A sane bound whatever the trailer says.
    const big = randomBytes(4096);
    const bigId = await putLayer(big);
    await assert.rejects(images.fetchLayer(await images.probeLayer(bigId), join(out, 'c.tar'), { reserveBytes: 0, maxBytes: 1000 }), /more than the 1000 allowed/);
    assert.deepEqual(await readdir(out), []);
  });

  it('refuses a layer when the disk would fall below the reserve', async () => {
    const tar = Buffer.alloc(20 * 1024 * 1024, 7);
    const diffId = await putLayer(tar);
    await assert.rejects(images.fetchLayer(await images.probeLayer(diffId), join(out, 'r.tar'), { reserveBytes: Number.MAX_SAFE_INTEGER }), ImageNoRoomError);
    assert.deepEqual(await readdir(out), []);
  });

  it('an aborted fetch (mid-way or before it starts) throws its reason and leaves no file', async () => {
    const tar = Buffer.alloc(4 * 1024 * 1024, 3);
    const diffId = await putLayer(tar);
    const stop = new AbortController();
    // The third range read aborts the fetch, as a finalize would.
    let reads = 0;
    class AbortingStore extends DirBlobStore {
      override observeRange(key: string, start: number, length: number, observe: BodyObserver, opts?: RangeOptions) {
        if (++reads === 3) stop.abort(new Error('paused by a finalize'));
        return super.observeRange(key, start, length, observe, opts);
      }
    }
    const aborting = new ImageObjects(new AbortingStore(join(dir, 'bucket')), new KeyLayout('tl', 'g'), new DeleteGate());
    const probe = await aborting.probeLayer(diffId);
    await assert.rejects(aborting.fetchLayer(probe, join(out, 'a.tar'), { reserveBytes: 0, rangeBytes: 1024, signal: stop.signal }), /paused by a finalize/);
    assert.ok(reads < 10, `the fetch stopped at once (${reads} reads)`);
    await assert.rejects(images.fetchLayer(probe, join(out, 'a2.tar'), { reserveBytes: 0, signal: stop.signal }), /paused by a finalize/);
    assert.deepEqual(await readdir(out), []);
  });

  it('a config is its exact bytes, JSON, naming exactly the diff ids asked for', async () => {
    const layers = [sha(Buffer.from('a')), sha(Buffer.from('b'))];
    const bytes = Buffer.from(JSON.stringify({ architecture: 'amd64', rootfs: { type: 'layers', diff_ids: layers } }));
    const digest = sha(bytes);
    await store.put(images.keyOf(digest), bytes);
    assert.deepEqual(await images.config(digest, layers), bytes);
    await assert.rejects(images.config(digest, [...layers].reverse()), /names the layers/);
    const other = Buffer.from(`${bytes.toString()} `);
    await store.put(images.keyOf(digest), other);
    await assert.rejects(images.config(digest, layers), /have digest/);
    const notJson = Buffer.from('{');
    await store.put(images.keyOf(sha(notJson)), notJson);
    await assert.rejects(images.config(sha(notJson), []), /not JSON/);
    await assert.rejects(images.config(sha(Buffer.from('nothing')), []), /not in the bucket/);
  });
});
