// `twinlayer restore`: a scripted history of a container (writes through a real overlayfs mount, shipped by the real
// UpperTracker with a volume and files in chunks, published with a JournalWriter into the embedded S3 server, another
// container's commits interleaved, a second generation) is restored by the real CLI at several commits and times; each
// restored upper dir, mounted over the same lower dir, must show exactly the merged tree captured at that commit, and
// its volume exactly the volume then. Hostile buckets (a corrupt blob, a signed changeset a standby refuses, a record
// no trusted key signed) are refused with nothing left in or beside the destination. Root only (overlayfs, mknod, trusted.* xattrs); no dockerd.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFile, chmod, chown, link, lstat, mkdir, mkdtemp, readdir, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { UpperTracker, type TrackedVolume } from '../../../src/changeset/index.js';
import { uploadChunks } from '../../../src/pusher/chunk-upload.js';
import {
  asDigest, Bucket, JournalWriter, PackStore, Signatures, SigningKey, type CommitRecord, type Generation, type S3BlobStore, type Seq,
} from '../../../src/store/index.js';
import { buildSampleLower, diffTrees, makeOverlayDirs, mountOverlay, requireRoot, snapshotTree, unmountOverlay, unmountQuietly, type NodeInfo, type OverlayDirs } from '../../support/overlay.js';
import { s3Env, testS3Store, withS3, type TestS3 } from '../../support/s3.js';
import { testKeyEnv, testSignatures } from '../../support/signing.js';
import { spawnTwinlayer } from '../../support/twinlayer.js';
import { file, symlinkEntry, tarOf } from '../changeset/craft-tar.js';
import { gz, putBlob } from '../puller/helpers.js';

const run = promisify(execFile);
const PREFIX = 'tl';
const GROUP = 'restore';
const WRITER = 'test-primary';

interface Reference {
  record: CommitRecord;
  merged: Map<string, NodeInfo>;
  volume: Map<string, NodeInfo>;
}

/** One container of the test's primary: an upper dir (mounted over `lower` for `web`), a volume, its tracker. */
class Shipper {
  readonly tracker: UpperTracker;
  #first = true;
  constructor(readonly name: string, upper: string, work: string, volumes: readonly TrackedVolume[], packs: PackStore) {
    this.tracker = new UpperTracker({ upperDir: upper, workDir: work, volumes, chunking: { thresholdBytes: 1024 * 1024, openSink: packs.openSink } });
  }

  /** Builds what changed (everything when `full` or the first time), uploads it with its chunks and publishes it. */
  async ship(bucket: Bucket, journal: JournalWriter, full = false): Promise<CommitRecord> {
    const built = await this.tracker.build(full || this.#first ? 'full' : 'reconcile');
    assert.ok(built !== null, `${this.name}: something to ship`);
    try {
      await bucket.uploadBlob(built.file, asDigest(built.digest));
      const chunks = built.chunks === undefined ? undefined : (await uploadChunks(built.chunks, bucket)).declared;
      const rec = await journal.publish({
        container: this.name, digest: asDigest(built.digest), size: built.size, kind: built.kind, counts: built.counts, firstWriteAt: new Date(),
        ...(chunks === undefined ? {} : { chunks }),
      });
      await journal.flushHead();
      this.tracker.commit(built);
      this.#first = false;
      // Publication times a millisecond apart at least, so --at can fall between two commits.
      await sleep(15);
      return rec;
    } finally {
      await rm(built.file, { force: true });
      if (built.chunks !== undefined) await rm(built.chunks.spoolDir, { recursive: true, force: true });
    }
  }
}

describe('twinlayer restore', { timeout: 600_000 }, () => {
  let base = '';
  let s3: TestS3;
  let store: S3BlobStore;
  let bucket: Bucket;
  let env: Record<string, string>;
  let lower = '';
  let primary: OverlayDirs;
  let volume = '';
  const refs = new Map<string, Reference>();
  const mounts: OverlayDirs[] = [];

  const big = randomBytes(3 * 1024 * 1024);

  async function restore(args: string[]): Promise<{ code: number | string; out: string }> {
    const p = spawnTwinlayer(['restore', ...args], env);
    const timer = setTimeout(() => void p.kill('SIGKILL'), 120_000);
    const code = await p.exited;
    clearTimeout(timer);
    await new Promise((resolve) => setImmediate(resolve));
    return { code, out: p.lines.join('\n') };
  }

  /** Mounts `<dir>/upper` over the lower dir and compares the merged tree and the volume with the reference. */
  async function assertRestored(dir: string, ref: Reference, label: string): Promise<void> {
    const o = { lower, upper: join(dir, 'upper'), work: join(base, `work-${label}`), merged: join(base, `merged-${label}`) };
    await mkdir(o.work);
    await mkdir(o.merged);
    mounts.push(o);
    await mountOverlay(o);
    try {
      assert.deepEqual(diffTrees(await snapshotTree(o.merged), ref.merged), [], `${label}: merged tree of the restored upper dir vs the primary's at seq ${ref.record.seq}`);
    } finally {
      await unmountOverlay(o);
    }
    assert.deepEqual(diffTrees(await snapshotTree(join(dir, 'volumes', 'data')), ref.volume), [], `${label}: volume data`);
    assert.deepEqual(await readdir(join(dir, 'volumes')), ['data']);
  }

  async function noLeftovers(dir: string): Promise<void> {
    assert.equal(await lstat(dir).catch(() => null), null, `${dir} must not exist after a refusal`);
    const name = dir.split('/').at(-1)!;
    assert.deepEqual((await readdir(base)).filter((n) => n.startsWith(`.${name}.restore-`)), [], 'no temp dir is left beside the destination');
  }

  before(async () => {
    requireRoot();
    base = await mkdtemp('/tmp/tl-restore-');
    s3 = await withS3();
    store = testS3Store(s3);
    bucket = new Bucket(store, { prefix: PREFIX, group: GROUP, signatures: testSignatures() });
    env = {
      ...s3Env(s3), ...(await testKeyEnv(base)), TWINLAYER_PREFIX: PREFIX, TWINLAYER_GROUP: GROUP, TWINLAYER_STATE_DIR: join(base, 'no-state'), TWINLAYER_HOST_ID: 'restorer',
    };
    lower = join(base, 'lower');
    await buildSampleLower(lower);
    primary = await makeOverlayDirs(base, 'primary', lower);
    mounts.push(primary);
    await mountOverlay(primary);
    volume = join(base, 'volume-data');
    await mkdir(volume);

    const packs = new PackStore(store, bucket.layout);
    const web = new Shipper('web', primary.upper, join(base, 'w-web'), [{ key: 'data', destination: '/var/lib/data', dir: volume }], packs);
    const dbUpper = join(base, 'db-upper');
    await mkdir(dbUpper);
    const db = new Shipper('db', dbUpper, join(base, 'w-db'), [], packs);
    const m = (rel: string): string => join(primary.merged, rel);
    const capture = async (g: number, rec: CommitRecord): Promise<void> => {
      refs.set(`${g}/${rec.seq}`, { record: rec, merged: await snapshotTree(primary.merged), volume: await snapshotTree(volume) });
    };

    const g1 = new JournalWriter(bucket, { generation: 1 as Generation, writer: WRITER, head: null });
    // web 1 (full): a private dir with its owner, a copied-up file, a symlink, a hard link, a file in chunks, the volume.
    await mkdir(m('srv/app'), { recursive: true });
    await chown(m('srv/app'), 1234, 5678);
    await chmod(m('srv/app'), 0o750);
    await writeFile(m('srv/app/config'), 'secret=1\n', { mode: 0o640 });
    await link(m('srv/app/config'), m('srv/app/config.hard'));
    await writeFile(m('etc/app.conf'), 'listen 8080\n');
    await symlink('/etc/app.conf', m('srv/link'));
    await writeFile(m('srv/big.bin'), big);
    await writeFile(join(volume, 'db.txt'), 'rows: 1\n');
    await capture(1, await web.ship(bucket, g1));
    // db 2: another container's commit between web's.
    await writeFile(join(dbUpper, 'x'), 'db\n');
    await db.ship(bucket, g1);
    // web 3: a lower file deleted (a whiteout), a setuid copy-up, an append to the chunked file, the volume changed.
    await unlink(m('etc/hosts.d/one'));
    await chmod(m('usr/bin/tool'), 0o4755);
    await appendFile(m('srv/big.bin'), randomBytes(200 * 1024));
    await writeFile(join(volume, 'db.txt'), 'rows: 2\n');
    await writeFile(join(volume, 'new'), 'new\n');
    await capture(1, await web.ship(bucket, g1));
    // web 4: a lower dir removed and made again (opaque), a volume file removed.
    await rm(m('etc/hosts.d'), { recursive: true });
    await mkdir(m('etc/hosts.d'));
    await writeFile(m('etc/hosts.d/three'), 'three\n');
    await unlink(join(volume, 'new'));
    await capture(1, await web.ship(bucket, g1));
    await writeFile(join(dbUpper, 'y'), 'db 2\n');
    await db.ship(bucket, g1);
    // web 6 (a full checkpoint), then web 7 (a delta after it: a lower tree removed, a lower file changed).
    await writeFile(m('srv/app/more'), 'more\n');
    await unlink(m('srv/link'));
    await capture(1, await web.ship(bucket, g1, true));
    await rm(m('data/deep'), { recursive: true });
    await writeFile(m('usr/lib/libx.so'), 'ELF v2');
    await capture(1, await web.ship(bucket, g1));
    await g1.close();
    // Generation 2 (opened by another writer without a claim, as `twinlayer push` does): web 1 (full), web 2.
    const g2 = new JournalWriter(bucket, { generation: 2 as Generation, writer: WRITER, head: null });
    await writeFile(m('srv/gen2'), 'second generation\n');
    await capture(2, await web.ship(bucket, g2, true));
    await writeFile(join(volume, 'db.txt'), 'rows: 3\n');
    await capture(2, await web.ship(bucket, g2));
    await g2.close();
    await unmountOverlay(primary);
  });

  after(async () => {
    for (const o of mounts) await unmountQuietly(o);
    store?.destroy();
    await s3?.close();
    if (base) await rm(base, { recursive: true, force: true });
  });

  const ref = (key: string): Reference => {
    const r = refs.get(key);
    assert.ok(r !== undefined, `a reference at ${key}`);
    return r;
  };

  it('--seq N --generation 1 gives the container exactly as it was at each of its commits of generation 1', async () => {
    assert.deepEqual([...refs.keys()], ['1/1', '1/3', '1/4', '1/6', '1/7', '2/1', '2/2']);
    // The big file ships in chunks: its restore goes through the chunk list and the packs.
    assert.ok(ref('1/1').record.chunks !== undefined && ref('1/3').record.chunks !== undefined, 'commits 1 and 3 ship srv/big.bin in chunks');
    for (const seq of [1, 3, 4, 6, 7]) {
      const dir = join(base, `seq-${seq}`);
      const r = await restore(['web', '--seq', String(seq), '--generation', '1', '--to', dir]);
      assert.equal(r.code, 0, r.out);
      const summary = r.out.split('\n').find((l) => l.includes('"msg":"restored"'));
      assert.ok(summary !== undefined, `a summary line:\n${r.out}`);
      const s = JSON.parse(summary) as { seq: number; fromFull: number; commits: number; generation: number; chunksReused: number; chunksFetched: number };
      // Commit 3 appends to the file in chunks: its unchanged chunks come from the file commit 1 restored.
      if (seq === 3) assert.ok(s.chunksReused > 0 && s.chunksFetched > 0, `chunks reused and fetched: ${summary}`);
      // The newest full checkpoint at or below the seq, and every commit of web after it (db's are not web's).
      assert.deepEqual([s.generation, s.seq, s.fromFull, s.commits], [1, seq, seq >= 6 ? 6 : 1, { 1: 1, 3: 2, 4: 3, 6: 1, 7: 2 }[seq]]);
      await assertRestored(dir, ref(`1/${seq}`), `seq-${seq}`);
    }
    // Exactly as overlayfs writes them: a deletion is a 0/0 character device, a dir made again is opaque.
    const wh = await lstat(join(base, 'seq-3', 'upper', 'etc/hosts.d/one'));
    assert.ok(wh.isCharacterDevice() && wh.rdev === 0, 'whiteout as a 0/0 character device');
    const { stdout } = await run('getfattr', ['--absolute-names', '--only-values', '-n', 'trusted.overlay.opaque', join(base, 'seq-4', 'upper', 'etc/hosts.d')]);
    assert.equal(stdout, 'y');
  });

  it('without --seq or --at: the newest commit of the newest generation that has the container; --seq alone reads that generation', async () => {
    const dir = join(base, 'newest');
    // An empty dir that exists already is fine.
    await mkdir(dir);
    const r = await restore(['web', '--to', dir]);
    assert.equal(r.code, 0, r.out);
    await assertRestored(dir, ref('2/2'), 'newest');
    const one = join(base, 'gen2-seq1');
    assert.equal((await restore(['web', '--seq', '1', '--to', one])).code, 0);
    await assertRestored(one, ref('2/1'), 'gen2-seq1');
  });

  it('--at T: the newest commit published at or before T, in the newest generation that has one', async () => {
    const c3 = ref('1/3').record;
    const c4 = ref('1/4').record;
    const between = new Date((Date.parse(c3.publishedAt) + Date.parse(c4.publishedAt)) / 2).toISOString();
    const cases: Array<[string, string]> = [[c4.publishedAt, '1/4'], [between, '1/3'], [ref('2/1').record.publishedAt, '2/1']];
    for (const [i, [at, key]] of cases.entries()) {
      const dir = join(base, `at-${i}`);
      const r = await restore(['web', '--at', at, '--to', dir]);
      assert.equal(r.code, 0, r.out);
      await assertRestored(dir, ref(key), `at-${i}`);
    }
    const before1 = new Date(Date.parse(ref('1/1').record.publishedAt) - 1000).toISOString();
    const none = await restore(['web', '--at', before1, '--to', join(base, 'at-none')]);
    assert.equal(none.code, 2, none.out);
    assert.match(none.out, /no commit of this container was published at or before/);
    await noLeftovers(join(base, 'at-none'));
  });

  it('refuses what it cannot do exactly, naming why, and writes nothing', async () => {
    const full = join(base, 'not-empty');
    await mkdir(full);
    await writeFile(join(full, 'keep'), 'mine');
    const cases: Array<[string[], RegExp]> = [
      [['web', '--to', full], /is not empty/],
      [['web', '--seq', '2', '--generation', '1', '--to', join(base, 'r1')], /container db's, not web's/],
      [['web', '--seq', '9', '--to', join(base, 'r2')], /seq 9 is past the last commit of this container in generation 2/],
      [['nothere', '--to', join(base, 'r3')], /no generation in the bucket has commits of this container/],
      [['web', '--seq', '1', '--at', '2026-01-01T00:00:00Z', '--to', join(base, 'r4')], /--seq and --at exclude each other/],
      [['web', '--at', 'yesterday', '--to', join(base, 'r5')], /--at expects an RFC 3339 time/],
      [['web'], /restore needs --to <dir>/],
      [['web', '--image', 'x'], /--image expects an image name with its tag/],
      [['web', '--image', 'x:1', '--to', join(base, 'r6')], /--to and --image exclude each other/],
      [['web', '--force', '--to', join(base, 'r7')], /--force goes with --image/],
    ];
    for (const [args, re] of cases) {
      const r = await restore(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.out}`);
      assert.match(r.out, re, args.join(' '));
    }
    assert.deepEqual(await readdir(full), ['keep']);
    for (const n of ['r1', 'r2', 'r3', 'r4', 'r5', 'r6', 'r7']) await noLeftovers(join(base, n));
  });

  it('a corrupt blob or a changeset the standby refuses after a good full checkpoint, and a record no trusted key signed, are refused with nothing left behind', async () => {
    // Generation 3: `bad` with a full and a delta whose blob is replaced; `forged` with a full and a delta whose
    // record is signed by a key the group does not trust.
    const up = join(base, 'hostile-upper');
    await mkdir(up);
    const packs = new PackStore(store, bucket.layout);
    const g3 = new JournalWriter(bucket, { generation: 3 as Generation, writer: WRITER, head: null });
    const bad = new Shipper('bad', up, join(base, 'w-bad'), [], packs);
    await writeFile(join(up, 'a'), 'bad full\n');
    await bad.ship(bucket, g3);
    await writeFile(join(up, 'b'), 'bad delta\n');
    const corrupt = await bad.ship(bucket, g3);
    const up2 = join(base, 'forged-upper');
    await mkdir(up2);
    const forged = new Shipper('forged', up2, join(base, 'w-forged'), [], packs);
    await writeFile(join(up2, 'a'), 'forged full\n');
    await forged.ship(bucket, g3);
    await writeFile(join(up2, 'b'), 'forged delta\n');
    const signedWell = await forged.ship(bucket, g3);
    // `evil`: a full checkpoint, then a delta signed by the group but holding what a standby refuses (a symlink out
    // of the tree and a file written through it).
    const up3 = join(base, 'evil-upper');
    await mkdir(up3);
    const evil = new Shipper('evil', up3, join(base, 'w-evil'), [], packs);
    await writeFile(join(up3, 'a'), 'evil full\n');
    await evil.ship(bucket, g3);
    const outside = join(base, 'outside');
    await mkdir(outside);
    const crafted = await putBlob(store, bucket, gz(tarOf([symlinkEntry('esc', outside), file('esc/pwned', 'gotcha')])));
    await g3.publish({ container: 'evil', ...crafted, kind: 'delta', firstWriteAt: new Date() });
    await g3.close();

    const bytes = randomBytes(corrupt.size);
    await store.put(bucket.blobKey(corrupt.digest), bytes);
    const other = SigningKey.generate(null);
    const untrusted = new Bucket(store, { prefix: PREFIX, group: GROUP, signatures: new Signatures({ signer: other, trusted: [other.trusted], acceptUnsigned: false }) });
    await untrusted.writeRecord({ ...signedWell, publishedAt: new Date().toISOString() });

    const r1 = await restore(['bad', '--to', join(base, 'bad-out')]);
    assert.equal(r1.code, 2, r1.out);
    assert.match(r1.out, /digest/i);
    assert.match(r1.out, /"msg":"commit applied".*"seq":1/, 'the full checkpoint was applied before the corrupt delta was refused');
    await noLeftovers(join(base, 'bad-out'));

    const r2 = await restore(['forged', '--to', join(base, 'forged-out')]);
    assert.equal(r2.code, 2, r2.out);
    assert.match(r2.out, /record refused: .*gen\/3\/journal\/0000000000000004\.json/);
    await noLeftovers(join(base, 'forged-out'));
    const r3 = await restore(['evil', '--to', join(base, 'evil-out')]);
    assert.equal(r3.code, 2, r3.out);
    assert.match(r3.out, /CHANGESET_REJECTED/);
    assert.match(r3.out, /"msg":"commit applied".*"seq":5/, 'the full checkpoint was applied before the delta was refused');
    await noLeftovers(join(base, 'evil-out'));
    assert.deepEqual(await readdir(outside), [], 'nothing written through the symlink');

    // The full checkpoint below it is intact and signed: restoring exactly that works. A newer generation whose head
    // no trusted key signed is passed over, and the log says so.
    await untrusted.writeHead({ version: 1, generation: 4 as Generation, seq: 1 as Seq, writer: WRITER, updatedAt: new Date().toISOString(), containers: { forged: 1 as Seq } });
    const ok = join(base, 'forged-full');
    const r4 = await restore(['forged', '--seq', '3', '--to', ok]);
    assert.equal(r4.code, 0, r4.out);
    assert.match(r4.out, /generation 4 passed over: its head was refused/);
    assert.deepEqual((await readdir(join(ok, 'upper'))).sort(), ['a']);
  });
});
