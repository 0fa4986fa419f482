// The reader of `docker save` archives (src/docker/image-archive.ts) on archives built here in both layouts: Docker
// 20.10's (manifest.json, <id>.json, <x>/layer.tar, a layer linked to another's) and the OCI one (index.json, blobs,
// gzip'd layers, an index naming an index). Each layer read back gunzips to the tar whose sha256 is its diff id.
import { after, before, describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { PassThrough } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { dirname, join } from 'node:path';
import { crc32, gunzipSync, gzipSync } from 'node:zlib';
import { create } from 'tar';
import { archiveMismatch, ImageArchiveError, readImageArchive, verifyArchive, type SavedImage } from '../../../src/docker/index.js';
import { gzipLayer } from '../../../src/docker/image-archive.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const hex = (b: Buffer): string => sha(b).slice('sha256:'.length);

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'image-archive-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

let n = 0;
async function scratch(): Promise<string> {
  const dir = join(root, `d${n++}`);
  await mkdir(dir, { recursive: true });
  return dir;
}

/** A layer tar holding one file of `text`, as bytes. */
async function layerTar(text: string): Promise<Buffer> {
  const dir = await scratch();
  await writeFile(join(dir, 'file.txt'), text.repeat(200));
  const out = join(await scratch(), 'layer.tar');
  await create({ cwd: dir, file: out, portable: true }, ['file.txt']);
  return readFile(out);
}

/** The tar of `dir` as `docker save` streams it. */
async function archiveOf(dir: string): Promise<NodeJS.ReadableStream> {
  return create({ cwd: dir, portable: true }, await readdir(dir)) as unknown as NodeJS.ReadableStream;
}

function configFor(diffIds: string[]): Buffer {
  return Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['sh'] }, rootfs: { type: 'layers', diff_ids: diffIds } }));
}

async function checkLayers(saved: SavedImage, tars: Buffer[]): Promise<void> {
  assert.deepEqual(saved.layers.map((l) => l.diffId), tars.map(sha));
  for (const [i, l] of saved.layers.entries()) {
    const gz = await readFile(l.file);
    assert.equal(gz.length, l.gzBytes);
    assert.equal(l.tarBytes, tars[i]!.length);
    assert.ok(gunzipSync(gz).equals(tars[i]!), `layer ${i} gunzips to its tar`);
  }
}

/** Docker 20.10's layout: two layers and a third that is a symlink to the first (a layer shared in the archive). */
async function legacyArchive(): Promise<{ dir: string; tars: Buffer[]; config: Buffer }> {
  const dir = await scratch();
  const a = await layerTar('a');
  const b = await layerTar('b');
  const tars = [a, b, a];
  const config = configFor(tars.map(sha));
  await mkdir(join(dir, 'aaa'));
  await writeFile(join(dir, 'aaa', 'layer.tar'), a);
  await writeFile(join(dir, 'aaa', 'VERSION'), '1.0');
  await mkdir(join(dir, 'bbb'));
  await writeFile(join(dir, 'bbb', 'layer.tar'), b);
  await mkdir(join(dir, 'ccc'));
  await symlink('../aaa/layer.tar', join(dir, 'ccc', 'layer.tar'));
  await writeFile(join(dir, `${hex(config)}.json`), config);
  await writeFile(join(dir, 'manifest.json'), JSON.stringify([{ Config: `${hex(config)}.json`, RepoTags: null, Layers: ['aaa/layer.tar', 'bbb/layer.tar', 'ccc/layer.tar'] }]));
  await writeFile(join(dir, 'repositories'), '{}');
  return { dir, tars, config };
}

/** The OCI layout: blobs by digest, a gzip'd layer and a plain one, index.json naming an index naming the manifest. */
async function ociArchive(opts: { zstd?: boolean } = {}): Promise<{ dir: string; tars: Buffer[]; config: Buffer }> {
  const dir = await scratch();
  const blobs = join(dir, 'blobs', 'sha256');
  await mkdir(blobs, { recursive: true });
  const put = async (b: Buffer): Promise<string> => {
    await writeFile(join(blobs, hex(b)), b);
    return sha(b);
  };
  const a = await layerTar('x');
  const b = await layerTar('y');
  const tars = [a, b];
  const config = configFor(tars.map(sha));
  const first = opts.zstd === true ? Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), a]) : gzipSync(a);
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: await put(config), size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: await put(first), size: first.length }, { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: await put(b), size: b.length }],
  }));
  const inner = Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: await put(manifest), size: manifest.length, platform: { os: 'linux', architecture: 'amd64' } }, { digest: sha(Buffer.from('another platform, not saved')), platform: { os: 'linux', architecture: 'arm64' } }] }));
  await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.index.v1+json', digest: await put(inner), size: inner.length }] }));
  await writeFile(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  return { dir, tars, config };
}

describe('readImageArchive', () => {
  for (const smallBytes of [1024, 4 * 1024 * 1024]) {
    const how = smallBytes === 1024 ? 'layers streamed to disk' : 'layers held in memory first';
    it(`reads the legacy layout, a linked layer included (${how})`, async () => {
      const { dir, tars, config } = await legacyArchive();
      const saved = await readImageArchive(await archiveOf(dir), { dir: await scratch(), smallBytes });
      assert.equal(saved.layout, 'legacy');
      assert.equal(saved.configDigest, sha(config));
      assert.ok(saved.configBytes.equals(config));
      await checkLayers(saved, tars);
      assert.deepEqual(saved.layers.map((l) => l.compression), ['none', 'none', 'none']);
      verifyArchive(saved, { configDigest: sha(config), diffIds: tars.map(sha) }, {});
    });

    it(`reads the OCI layout through a nested index, a gzip'd layer kept as it came (${how})`, async () => {
      const { dir, tars, config } = await ociArchive();
      const saved = await readImageArchive(await archiveOf(dir), { dir: await scratch(), smallBytes });
      assert.equal(saved.layout, 'oci');
      assert.equal(saved.configDigest, sha(config));
      await checkLayers(saved, tars);
      assert.deepEqual(saved.layers.map((l) => l.compression), ['gzip', 'none']);
      assert.ok((await readFile(saved.layers[0]!.file)).equals(gzipSync(tars[0]!)), 'the gzip\'d layer is stored byte for byte');
    });
  }

  it('prefers manifest.json when the OCI layout has one too (Docker 25+)', async () => {
    const { dir, tars, config } = await ociArchive();
    await writeFile(join(dir, 'manifest.json'), JSON.stringify([{ Config: `blobs/sha256/${hex(config)}`, Layers: [`blobs/sha256/${hex(gzipSync(tars[0]!))}`, `blobs/sha256/${hex(tars[1]!)}`] }]));
    // index.json that leads nowhere: only manifest.json is read.
    await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ digest: sha(Buffer.from('none')) }] }));
    const saved = await readImageArchive(await archiveOf(dir), { dir: await scratch() });
    assert.equal(saved.layout, 'oci');
    await checkLayers(saved, tars);
  });

  it('refuses a zstd layer for good', async () => {
    const { dir } = await ociArchive({ zstd: true });
    for (const smallBytes of [1024, 4 * 1024 * 1024]) {
      await assert.rejects(readImageArchive(await archiveOf(dir), { dir: await scratch(), smallBytes }), (err: unknown) => err instanceof ImageArchiveError && err.permanent && /zstd/.test(err.message));
    }
  });

  it('refuses an archive whose manifest names a layer it lacks, or that has no manifest', async () => {
    const { dir } = await legacyArchive();
    await rm(join(dir, 'bbb'), { recursive: true });
    await assert.rejects(readImageArchive(await archiveOf(dir), { dir: await scratch() }), /lacks "bbb\/layer.tar"/);
    await rm(join(dir, 'manifest.json'));
    await assert.rejects(readImageArchive(await archiveOf(dir), { dir: await scratch() }), (err: unknown) => err instanceof ImageArchiveError && err.permanent && /neither manifest.json nor index.json/.test(err.message));
  });

  it('refuses a manifest.json that does not parse', async () => {
    const { dir } = await legacyArchive();
    await writeFile(join(dir, 'manifest.json'), JSON.stringify([{ Config: '../etc/passwd', Layers: [] }]));
    await assert.rejects(readImageArchive(await archiveOf(dir), { dir: await scratch() }), /manifest.json of the saved image is not what Docker writes/);
  });

  it('refuses for good an OCI manifest blob that is not JSON', async () => {
    const dir = await scratch();
    const bad = Buffer.from('{ not json');
    await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
    await writeFile(join(dir, 'blobs', 'sha256', hex(bad)), bad);
    await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ digest: sha(bad), size: bad.length }] }));
    await assert.rejects(readImageArchive(await archiveOf(dir), { dir: await scratch() }), (err: unknown) => err instanceof ImageArchiveError && err.permanent && /is not JSON/.test(err.message));
  });

  it('bounds the entries and the small files it holds', async () => {
    const { dir } = await legacyArchive();
    await assert.rejects(readImageArchive(await archiveOf(dir), { dir: await scratch(), maxEntries: 3 }), /more than 3 entries/);
    await assert.rejects(readImageArchive(await archiveOf(dir), { dir: await scratch(), maxHeldBytes: 100 }), /more than 100 bytes of small files/);
  });

  it('stops mid-layer when its signal is aborted while the stream stalls', async () => {
    const { dir } = await legacyArchive();
    const whole = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      void archiveOf(dir).then((s) => s.on('data', (c: Buffer) => chunks.push(c)).on('end', () => resolve(Buffer.concat(chunks))).on('error', reject));
    });
    const stalled = new PassThrough();
    // The headers and the first bytes of the first layer, then nothing more: a docker save that hangs.
    stalled.write(whole.subarray(0, 2048));
    const ac = new AbortController();
    const reading = readImageArchive(stalled, { dir: await scratch(), signal: ac.signal, smallBytes: 1024 });
    await delay(50);
    ac.abort(new Error('demoted'));
    await assert.rejects(reading, /demoted/);
    assert.ok(stalled.destroyed, 'the save stream is closed');
  });

  it('reads nothing when its signal is aborted already, and closes the stream', async () => {
    const ac = new AbortController();
    ac.abort(new Error('stopping'));
    const stream = new PassThrough();
    stream.write(Buffer.alloc(1024));
    await assert.rejects(readImageArchive(stream, { dir: await scratch(), signal: ac.signal }), /stopping/);
    assert.ok(stream.destroyed);
  });
});

describe('gzipLayer', () => {
  /** Whether the trailer of `gz` (its last 8 bytes) has the whole tar's CRC32 and ISIZE: the standby checks ISIZE; a
   *  second member or bytes after the member leave a trailer that is not the whole's. */
  function oneMemberFor(gz: Buffer, tar: Buffer): boolean {
    return gz.readUInt32LE(gz.length - 8) === crc32(tar) && gz.readUInt32LE(gz.length - 4) === tar.length % 2 ** 32;
  }

  for (const [what, make] of [
    ['two gzip members (eStargz, bgzip)', (tar: Buffer) => Buffer.concat([gzipSync(tar.subarray(0, 1000)), gzipSync(tar.subarray(1000))])],
    ['bytes after its gzip member', (tar: Buffer) => Buffer.concat([gzipSync(tar), Buffer.alloc(64)])],
  ] as const) {
    it(`gzips again a layer of ${what}: one member, its trailer the whole tar's, gunzipping to the diff id`, async () => {
      const tar = await layerTar('m');
      const came = make(tar);
      assert.ok(!oneMemberFor(came, tar), 'the layer as it came is not one member that fits');
      const file = join(await scratch(), 'layer.tar.gz');
      const got = await gzipLayer(PassThrough.from([came]) as AsyncIterable<Buffer>, file, {});
      const stored = await readFile(file);
      assert.equal(got.diffId, sha(tar));
      assert.equal(got.tarBytes, tar.length);
      assert.equal(got.gzBytes, stored.length);
      assert.ok(oneMemberFor(stored, tar), 'the stored layer is one member whose trailer fits');
      assert.equal(sha(gunzipSync(stored)), got.diffId);
      assert.deepEqual(await readdir(dirname(file)), ['layer.tar.gz'], 'no temp file is left');
    });
  }

  it('rejects a gzip layer that does not gunzip, removes its file and leaves no file open', async () => {
    const file = join(await scratch(), 'layer.tar.gz');
    const bad = Buffer.concat([gzipSync(await layerTar('c')).subarray(0, 40), Buffer.alloc(4096, 0xff)]);
    const fds = (await readdir('/proc/self/fd')).length;
    await assert.rejects(gzipLayer(PassThrough.from([bad]) as AsyncIterable<Buffer>, file, {}), (err: unknown) => err instanceof ImageArchiveError && !err.permanent);
    await delay(50);
    assert.equal((await readdir('/proc/self/fd')).length, fds, 'no file descriptor is left open');
    assert.deepEqual(await readdir(dirname(file)), []);
  });

  it('keeps a single-member gzip layer byte for byte', async () => {
    const tar = await layerTar('k');
    const came = gzipSync(tar, { level: 1 });
    const file = join(await scratch(), 'layer.tar.gz');
    await gzipLayer(PassThrough.from([came]) as AsyncIterable<Buffer>, file, {});
    assert.ok((await readFile(file)).equals(came));
  });

  // A link to /dev/full: every write fails with ENOSPC, and the link (not the device) is what a failure removes.
  for (const [what, bytes] of [['a plain tar', async () => layerTar('p')], ['a gzip\'d tar', async () => gzipSync(await layerTar('g'))]] as const) {
    it(`rejects when its file cannot be written (ENOSPC), ${what}, and leaves no file open`, async () => {
      assert.ok((await stat('/dev/full')).isCharacterDevice(), '/dev/full is the device (something replaced it with a file)');
      const dir = await scratch();
      const file = join(dir, 'layer.tar.gz');
      await symlink('/dev/full', file);
      const body = await bytes();
      const fds = (await readdir('/proc/self/fd')).length;
      await assert.rejects(gzipLayer(PassThrough.from([body]) as AsyncIterable<Buffer>, file, { path: 'x' }), (err: unknown) => err instanceof ImageArchiveError && /ENOSPC|no space/i.test(err.message));
      await delay(50);
      assert.equal((await readdir('/proc/self/fd')).length, fds, 'no file descriptor is left open');
    });
  }
});

describe('archiveMismatch', () => {
  const layer = (diffId: string): SavedImage['layers'][number] => ({ diffId, file: '', gzBytes: 1, tarBytes: 1, compression: 'none' });
  const d = (c: string): string => `sha256:${c.repeat(64)}`;
  const saved = { configDigest: d('c'), configDiffIds: [d('1'), d('2')], layers: [layer(d('1')), layer(d('2'))] };

  it('accepts the image its identity names', () => {
    assert.equal(archiveMismatch(saved, { configDigest: d('c'), diffIds: [d('1'), d('2')] }), null);
  });

  it('names the config digest, the config\'s diff ids or the layer that differs', () => {
    assert.match(archiveMismatch(saved, { configDigest: d('e'), diffIds: [d('1'), d('2')] }) ?? '', /config has digest/);
    assert.match(archiveMismatch(saved, { configDigest: d('c'), diffIds: [d('1')] }) ?? '', /config lists 2 diff ids/);
    assert.match(archiveMismatch({ ...saved, layers: [layer(d('1')), layer(d('3'))] }, { configDigest: d('c'), diffIds: [d('1'), d('2')] }) ?? '', /layer 1 hashes to/);
    assert.throws(() => verifyArchive({ ...saved, configBytes: Buffer.alloc(0), layout: 'legacy' }, { configDigest: d('e'), diffIds: [] }, { imageId: 'x' }), (err: unknown) => err instanceof ImageArchiveError && err.permanent);
  });
});
