// ENOSPC while staging: the standby engine's data root lives on a small loop-mounted ext4 that this test makes.
// A changeset larger than the free space is refused before anything is written; one that runs out of inodes
// midway fails with ENOSPC and is undone at once (atomic staging). Either way the applied seq does not move and the status says why; once space is freed
// (ballast the test put on the same file system is deleted), the same commit is retried whole (THREATS.md
// "Crashes and storage faults"). Growing the file system online (resize2fs) is not possible here: this machine's
// root lacks CAP_SYS_RESOURCE ("Permission denied to resize filesystem"), and an offline resize would need the
// engine stopped.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readFile, readdir, rm, statfs, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { DockerRuntime } from '../../../src/docker/index.js';
import type { Puller } from '../../../src/puller/index.js';
import { AppliedStateFile } from '../../../src/puller/applied-state.js';
import type { S3BlobStore } from '../../../src/store/index.js';
import { dockerCli, startEngine, type Engine } from '../../../src/lab/engine.js';
import { importBusyboxImage } from '../../../src/lab/busybox-image.js';
import { testS3Store, withS3, type TestS3 } from '../../support/s3.js';
import { dir as tarDir, file as tarFile, tarOf } from '../changeset/craft-tar.js';
import { diffStates, upperState } from '../../support/upper-state.js';
import { appliedSeq, bucketFor, collectingLogger, craftRecord, gz, openPuller, putBlob, sha256, twinSpec, writeHead } from './helpers.js';

const execFileP = promisify(execFile);
const GROUP = 'enospc';
const NAME = 'full-web';
const MB = 1024 * 1024;

async function run(cmd: string, args: string[]): Promise<string> {
  const { stdout } = await execFileP(cmd, args, { timeout: 60_000 });
  return stdout;
}

describe('puller on a standby whose disk is full', { timeout: 240_000 }, () => {
  let base: string;
  let img: string;
  let mnt: string;
  let mounted = false;
  let s3: TestS3;
  let store: S3BlobStore;
  let engine: Engine | undefined;
  let puller: Puller | undefined;

  /** Takes all but `leaveBytes` of the free space, and all but `leaveInodes` of the free inodes, with ballast files. */
  async function ballast(leaveBytes: number, leaveInodes: number): Promise<string> {
    const dir = await mkdtemp(join(mnt, 'ballast-'));
    const st = await statfs(mnt);
    // fallocate needs a few blocks of its own for the extent tree: leave a margin.
    const bytes = st.bavail * st.bsize - leaveBytes - 2 * MB;
    if (bytes > 0) await run('fallocate', ['-l', String(bytes), join(dir, 'bytes')]);
    const inodes = (await statfs(mnt)).ffree - leaveInodes;
    for (let i = 0; i < inodes; i++) await writeFile(join(dir, `i${i}`), '');
    return dir;
  }

  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'tl-nospc-'));
    img = join(base, 'fs.img');
    mnt = join(base, 'mnt');
    await mkdir(mnt);
    // 64 MiB, few inodes: data blocks and inodes both run out at sizes a test can reach quickly.
    await run('truncate', ['-s', '64M', img]);
    await run('mkfs.ext4', ['-q', '-F', '-N', '1024', '-m', '0', img]);
    await run('mount', ['-o', 'loop', img, mnt]);
    mounted = true;
    s3 = await withS3();
    store = testS3Store(s3);
    engine = await startEngine({ name: 'puller-n', baseDir: mnt });
    const info = (await dockerCli(engine, ['info', '--format', '{{.Driver}} {{json .DriverStatus}}'])).trim();
    assert.match(info, /^overlay2 .*extfs/, `overlay2 on the loop-mounted ext4: ${info}`);
  });

  after(async () => {
    const errors: unknown[] = [];
    await puller?.stop().catch((e: unknown) => errors.push(e));
    store?.destroy();
    await engine?.stop().catch((e: unknown) => errors.push(e));
    await s3?.close().catch((e: unknown) => errors.push(e));
    // umount of a `-o loop` mount detaches its loop device (autoclear).
    if (mounted) await run('umount', [mnt]).catch((e: unknown) => errors.push(e));
    if (base) await rm(base, { recursive: true, force: true });
    if (errors.length > 0) throw new AggregateError(errors, 'cleanup failed');
  });

  it('fails the commit without moving the seq, says why, and retries it whole once there is room', async () => {
    if (!engine) throw new Error('no engine');
    const imageId = await importBusyboxImage(engine.socketPath, 'tl-busybox:puller');
    const bucket = bucketFor(store, GROUP);
    await bucket.putSpec(NAME, twinSpec(NAME, imageId));
    const head: Record<string, number> = {};
    let seq = 0;
    const publish = async (tar: Buffer, kind: 'full' | 'delta' = 'delta'): Promise<void> => {
      const blob = await putBlob(store, bucket, gz(tar));
      seq++;
      await bucket.writeRecord(craftRecord({ seq, parentSeq: head[NAME] ?? 0, container: NAME, kind, ...blob }));
      head[NAME] = seq;
      await writeHead(bucket, seq, head);
    };
    await publish(tarOf([tarFile('base', 'base')]), 'full');
    const stateDir = join(base, 'state');
    const { log, lines } = collectingLogger();
    puller = await openPuller({ socketPath: engine.socketPath, mountInfoPath: engine.mountInfoPath, bucket, group: GROUP, stateDir, log });
    await puller.pollOnce();
    assert.equal(await appliedSeq(stateDir, GROUP, NAME), 1);
    const runtime = new DockerRuntime({ socketPath: engine.socketPath, mountInfoPath: engine.mountInfoPath });
    const twin = await runtime.twinState(NAME);
    if (twin.state === 'absent') assert.fail('twin created');
    const upper = twin.layers.upperDir;
    const reason = async (): Promise<string> => (await puller?.status())?.containers.find((c) => c.name === NAME)?.reason ?? '';

    // 1. More bytes than the file system has free: refused before anything is written.
    let held = await ballast(8 * MB, 10_000_000);
    const left = await statfs(upper);
    const big = randomBytes(left.bavail * left.bsize + 4 * MB);
    await publish(tarOf([tarFile('big.bin', big)]));
    await puller.pollOnce();
    assert.equal(await appliedSeq(stateDir, GROUP, NAME), 1, 'the seq does not move');
    assert.deepEqual(await readdir(upper), ['base'], 'nothing written');
    assert.match(await reason(), /free/, 'the status says the disk is too full');
    await rm(held, { recursive: true });
    await puller.pollOnce();
    assert.equal(await appliedSeq(stateDir, GROUP, NAME), 2, 'retried once there is room');
    assert.equal(sha256(await readFile(join(upper, 'big.bin'))), sha256(big), 'staged whole');
    assert.equal(await reason(), '');

    // 2. Out of inodes midway (the byte budget passes): ENOSPC from the kernel, after `base` was already replaced and
    // files were created. The commit is undone at once: the upper dir is, file by file, as before it.
    held = await ballast(4 * MB, 100);
    const beforeCommit = await upperState(upper);
    const count = 300;
    const pieces = [tarFile('base', 'rewritten by commit 3'), tarDir('many')];
    for (let i = 0; i < count; i++) pieces.push(tarFile(`many/f${String(i).padStart(6, '0')}`, String(i)));
    await publish(tarOf(pieces));
    await puller.pollOnce();
    assert.equal(await appliedSeq(stateDir, GROUP, NAME), 2, 'the seq does not move');
    assert.match(await reason(), /ENOSPC|no space/i, `the status says why: ${await reason()}`);
    assert.ok(lines.some((l) => l.includes('staging failed') && l.includes('ENOSPC')), 'logged');
    const tmpLeft = await readdir(join(upper, '..', 'twinlayer-tmp'));
    assert.deepEqual(tmpLeft, [], 'no temp files, undo log or undo area left behind');
    assert.deepEqual(diffStates(beforeCommit, await upperState(upper)), [], 'undone: the upper dir is exactly as before the commit');
    assert.ok(lines.some((l) => l.includes('commit undone after a failure midway')), 'the undo is logged');
    await rm(held, { recursive: true });
    await puller.pollOnce();
    assert.equal(await appliedSeq(stateDir, GROUP, NAME), 3, 'retried whole once there is room');
    assert.equal((await readdir(join(upper, 'many'))).length, count);
    assert.equal(await readFile(join(upper, 'many', `f${String(count - 1).padStart(6, '0')}`), 'utf8'), String(count - 1));
    assert.equal(await readFile(join(upper, 'base'), 'utf8'), 'rewritten by commit 3');
    assert.equal(await reason(), '');
  });

  it('never empties a twin that holds a trusted state: a checkpoint restating it is recorded, another waits for room; an untrusted one is emptied first when that makes room', async () => {
    if (!engine) throw new Error('no engine');
    // The first case left its twin holding most of the small file system, and imported the image already.
    await dockerCli(engine, ['rm', '-f', NAME]);
    const imageId = (await dockerCli(engine, ['image', 'inspect', '--format', '{{.Id}}', 'tl-busybox:puller'])).trim();
    const group = 'enospc-full';
    const name = 'swap-web';
    const bucket = bucketFor(store, group);
    await bucket.putSpec(name, twinSpec(name, imageId));
    let seq = 0;
    const publishFull = async (tar: Buffer, sameAs = false): Promise<number> => {
      const blob = await putBlob(store, bucket, gz(tar));
      const parentSeq = seq;
      seq++;
      await bucket.writeRecord(craftRecord({ seq, parentSeq, container: name, kind: 'full', ...blob, ...(sameAs ? { sameAs: parentSeq } : {}) }));
      await writeHead(bucket, seq, { [name]: seq });
      return seq;
    };
    const stateDir = join(base, 'state-full');
    const { log, lines } = collectingLogger();
    let p = await openPuller({ socketPath: engine.socketPath, mountInfoPath: engine.mountInfoPath, bucket, group, stateDir, log });
    const free0 = (await statfs(mnt)).bavail * (await statfs(mnt)).bsize;
    const old = randomBytes(Math.floor(free0 / 3));
    const waits = (): string[] => lines.filter((l) => l.includes('staging waits for free disk space'));
    try {
      const first = [tarFile('old.bin', old), tarFile('keep', 'first')];
      await publishFull(tarOf(first));
      await p.pollOnce();
      assert.equal(await appliedSeq(stateDir, group, name), 1);
      const runtime = new DockerRuntime({ socketPath: engine.socketPath, mountInfoPath: engine.mountInfoPath });
      const twin = await runtime.twinState(name);
      if (twin.state === 'absent') assert.fail('twin created');
      const upper = twin.layers.upperDir;
      const oldIno = (await lstat(join(upper, 'old.bin'))).ino;
      const status = async (): Promise<string> => (await p.status()).containers.find((c) => c.name === name)?.reason ?? '';
      const leave = Math.floor(free0 / 6);
      const held = await ballast(leave, 1_000_000);
      try {
        const left = (await statfs(mnt)).bavail * (await statfs(mnt)).bsize;
        assert.ok(old.length > left, 'the twin\'s tree does not fit beside itself');
        // A periodic checkpoint restating commit 1: recorded, nothing emptied or written (the old code emptied the twin
        // and staged it again).
        const restating = await publishFull(tarOf(first), true);
        await p.pollOnce();
        assert.equal(await appliedSeq(stateDir, group, name), restating, `recorded: ${await status()}`);
        assert.equal((await lstat(join(upper, 'old.bin'))).ino, oldIno, 'old.bin was not staged again');
        assert.deepEqual((await readdir(upper)).sort(), ['keep', 'old.bin']);
        assert.ok(!lines.some((l) => l.includes('emptying a twin')), 'nothing emptied');

        // A full commit with changes of its own that fits only in place of the old tree: the trusted twin is not
        // emptied for it; it waits for room and keeps what boots.
        const next = randomBytes(Math.floor((left + old.length) / 2));
        assert.ok(next.length > left, 'it does not fit beside the old tree');
        const fit = await publishFull(tarOf([tarFile('new.bin', next)]));
        await p.pollOnce();
        assert.equal(await appliedSeq(stateDir, group, name), restating, 'it waits');
        assert.deepEqual((await readdir(upper)).sort(), ['keep', 'old.bin'], 'a trusted twin is never emptied to make room');
        assert.match(await status(), /free.*not emptied to make room/, await status());
        assert.ok(!lines.some((l) => l.includes('emptying a twin')), 'nothing emptied');

        // The same twin untrusted (a commit interrupted by a restart of the machine, as recovery records it): emptied
        // first, then staged; but not when even that would not make room.
        await p.stop();
        const file = new AppliedStateFile(stateDir, group);
        const state = await file.load(group);
        (state.held ??= {})[name] = 'a commit was interrupted by a restart of the machine, so its upper dir is not trusted; it boots once a full checkpoint is staged into it again';
        await file.save(state);
        const huge = await publishFull(tarOf([tarFile('huge.bin', randomBytes(left + old.length + 4 * MB))]));
        p = await openPuller({ socketPath: engine.socketPath, mountInfoPath: engine.mountInfoPath, bucket, group, stateDir, log });
        await p.pollOnce();
        // Restaged from the journal (a held twin is): it holds no staged commit until a full checkpoint is staged.
        assert.equal(await appliedSeq(stateDir, group, name), 0);
        assert.ok(waits().some((l) => l.includes(`"seq":${huge}`) && /not enough either/.test(l)), 'waits: emptying would not make room');
        assert.deepEqual((await readdir(upper)).sort(), ['keep', 'old.bin'], 'nothing emptied when that would not make room');
        await p.pollOnce();
        assert.equal(waits().filter((l) => l.includes(`"seq":${huge}`)).length, 1, 'the wait is logged once per commit, not at every poll');
        const fitAgain = await publishFull(tarOf([tarFile('new.bin', next)]));
        assert.ok(fitAgain > fit);
        await p.pollOnce();
        assert.equal(await appliedSeq(stateDir, group, name), fitAgain, `staged: ${await status()}`);
        assert.deepEqual(await readdir(upper), ['new.bin']);
        assert.equal(sha256(await readFile(join(upper, 'new.bin'))), sha256(next));
        assert.equal(await status(), '', 'no longer held');
        assert.ok(lines.some((l) => l.includes('emptying a twin') && l.includes(name)), 'the emptying is logged');
        const stateFile = JSON.parse(await readFile(join(stateDir, 'pull', group, 'applied.json'), 'utf8')) as { held?: Record<string, string> };
        assert.equal(stateFile.held?.[name], undefined);
      } finally {
        await rm(held, { recursive: true });
      }
    } finally {
      await p.stop();
    }
  });
});

