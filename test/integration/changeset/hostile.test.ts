// THREATS.md "Changeset content": hostile changesets are refused before any write, leaving the upper dir, a
// sentinel dir outside it and the tmp dir untouched; the legitimate overlayfs objects are staged exactly.
// Root only (mknod, trusted.* xattrs, chown).
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { statfs } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ChangesetRejectedError, stageChangeset, defaultLimits, type Limits } from '../../../src/changeset/index.js';
import { requireRoot, snapshotTree } from '../../support/overlay.js';
import { dir, file, hardlinkEntry, paxRecord, rawHeader, rawPax, symlinkEntry, tarOf, writeGz, entry, type Piece } from './craft-tar.js';

let base = '';
let upper = '';
let tmpDir = '';
let sentinel = '';
let n = 0;

function xattrDump(path: string): string {
  return execFileSync('getfattr', ['--absolute-names', '-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', path]).toString().split(base).join('<base>');
}

async function state(): Promise<string> {
  const snap = (m: Awaited<ReturnType<typeof snapshotTree>>): unknown => [...m].map(([p, i]) => [p, { ...i, ino: String(i.ino), mtimeUs: String(i.mtimeUs) }]);
  return JSON.stringify({ upper: snap(await snapshotTree(upper)), sentinel: snap(await snapshotTree(sentinel)), x: xattrDump(upper) });
}

async function blob(pieces: Piece[] | Buffer, end = true): Promise<string> {
  const tar = Array.isArray(pieces) ? tarOf(pieces, end) : pieces;
  return await writeGz(join(base, `blob-${n++}.tar.gz`), tar);
}

/** Stages and expects a refusal that names `entry` (when given), with nothing changed anywhere. */
async function expectRejected(path: string, entryName?: string | RegExp, limits?: Limits, kind: 'delta' | 'full' = 'delta'): Promise<void> {
  const before = await state();
  await assert.rejects(
    stageChangeset(path, kind, { upperDir: upper, tmpDir }, limits === undefined ? {} : { limits }),
    (err: unknown) => {
      assert.ok(err instanceof ChangesetRejectedError, `expected ChangesetRejectedError, got ${String(err)}`);
      assert.equal(err.code, 'CHANGESET_REJECTED');
      if (typeof entryName === 'string') assert.equal(err.context.entry, entryName);
      if (entryName instanceof RegExp) assert.match(String(err.context.entry), entryName);
      return true;
    },
  );
  assert.equal(await state(), before, 'upper dir or sentinel changed');
  assert.deepEqual(await readdir(tmpDir), [], 'tmp dir not empty');
}

describe('staging refuses hostile changesets', () => {
  before(async () => {
    requireRoot();
    base = await mkdtemp('/tmp/twinlayer-cs-hostile-');
  });
  after(async () => {
    if (base !== '') await rm(base, { recursive: true, force: true });
  });
  beforeEach(async () => {
    const caseDir = join(base, `case-${n++}`);
    upper = join(caseDir, 'upper');
    tmpDir = join(caseDir, 'tmp');
    sentinel = join(caseDir, 'sentinel');
    await mkdir(join(upper, 'd/sub'), { recursive: true });
    await mkdir(tmpDir);
    await mkdir(sentinel);
    await writeFile(join(sentinel, 'file'), 'do not touch');
    await writeFile(join(upper, 'd/kept'), 'kept');
    await writeFile(join(upper, 'notdir'), 'plain file');
    await symlink(sentinel, join(upper, 'evil'));
  });

  const ok = file('aaa-first', 'a valid entry before the bad one');

  it('refuses path traversal', async () => expectRejected(await blob([ok, file('../x')]), '../x'));
  it('refuses absolute paths', async () => expectRejected(await blob([ok, rawHeader({ path: '/etc/x', type: 'File' })]), '/etc/x'));
  it('refuses repeated slashes, `.` components and NUL', async () => {
    await expectRejected(await blob([ok, file('d//x')]), 'd//x');
    await expectRejected(await blob([ok, file('./d/x')]), './d/x');
    await expectRejected(await blob([ok, rawPax(paxRecord('path', 'd/a\0b')), rawHeader({ path: 'placeholder', type: 'File' })]), /d\/a/);
  });
  it('refuses over-long names and paths', async () => {
    await expectRejected(await blob([ok, file('n'.repeat(256))]));
    await expectRejected(await blob([ok, file(Array.from({ length: 30 }, () => 'p'.repeat(200)).join('/'))]));
  });
  it('refuses writing through a symlink of the same changeset', async () => {
    await expectRejected(await blob([ok, symlinkEntry('s', sentinel), file('s/pwn')]), 's/pwn');
  });
  it('refuses writing through a symlink already on disk', async () => {
    await expectRejected(await blob([ok, file('evil/pwn')]), 'evil/pwn');
    await expectRejected(await blob([ok, dir('evil/sub')]), 'evil/sub');
    await expectRejected(await blob([ok, file('evil/.wh.file')]), 'evil/.wh.file');
  });
  it('refuses writing through a symlink staged by an earlier changeset', async () => {
    await stageChangeset(await blob([symlinkEntry('s2', sentinel)]), 'delta', { upperDir: upper, tmpDir });
    assert.equal((await lstat(join(upper, 's2'))).isSymbolicLink(), true);
    await expectRejected(await blob([ok, file('s2/pwn')]), 's2/pwn');
    await expectRejected(await blob([ok, file('s2/file', 'overwrite')]), 's2/file');
    await expectRejected(await blob([ok, hardlinkEntry('h', 's2/file')]), 'h');
    assert.equal(await readFile(join(sentinel, 'file'), 'utf8'), 'do not touch');
  });
  it('refuses entries under a non-directory', async () => {
    await expectRejected(await blob([ok, file('notdir/x')]), 'notdir/x');
    await expectRejected(await blob([ok, file('f'), file('f/x')]), 'f/x');
    await expectRejected(await blob([ok, file('missing/x')]), 'missing/x');
  });
  it('refuses hard links out, to absent paths and through symlinks', async () => {
    await expectRejected(await blob([ok, hardlinkEntry('h', '../../etc/passwd')]), 'h');
    await expectRejected(await blob([ok, hardlinkEntry('h', '/etc/passwd')]), 'h');
    await expectRejected(await blob([ok, hardlinkEntry('h', 'absent')]), 'h');
    await expectRejected(await blob([ok, hardlinkEntry('h', 'evil/file')]), 'h');
    await expectRejected(await blob([ok, symlinkEntry('s', sentinel), hardlinkEntry('h', 's/file')]), 'h');
    await expectRejected(await blob([ok, hardlinkEntry('h', 'later'), file('later')]), 'h');
  });
  it('refuses devices, FIFOs and other entry types', async () => {
    await expectRejected(await blob([ok, rawHeader({ path: 'null', type: 'CharacterDevice', devmaj: 1, devmin: 3 })]), 'null');
    await expectRejected(await blob([ok, rawHeader({ path: 'wh', type: 'CharacterDevice', devmaj: 0, devmin: 0 })]), 'wh');
    await expectRejected(await blob([ok, rawHeader({ path: 'sda', type: 'BlockDevice', devmaj: 8, devmin: 0 })]), 'sda');
    await expectRejected(await blob([ok, rawHeader({ path: 'fifo', type: 'FIFO' })]), 'fifo');
    await expectRejected(await blob([ok, rawHeader({ path: 'g', type: 'GlobalExtendedHeader', size: 0 })]));
  });
  it('refuses malformed whiteouts and a whiteout with the same name', async () => {
    await expectRejected(await blob([ok, file('d/.wh.', '')]), 'd/.wh.');
    await expectRejected(await blob([ok, file('d/.wh..', '')]), 'd/.wh..');
    await expectRejected(await blob([ok, file('d/.wh.a/b', '')]), 'd/.wh.a/b');
    await expectRejected(await blob([ok, file('d/.wh..wh.other', '')]), 'd/.wh..wh.other');
    await expectRejected(await blob([ok, file('d/.wh.kept', 'not empty')]), 'd/.wh.kept');
    await expectRejected(await blob([ok, file('d/.wh.x', ''), file('d/x')]), 'd/x');
    await expectRejected(await blob([ok, file('d/x'), file('d/.wh.x', '')]), 'd/.wh.x');
    await expectRejected(await blob([ok, file('.wh.d', ''), file('d/new')]), 'd/new');
  });
  it('refuses truncated and corrupt gzip and tar streams', async () => {
    const good = gzipSync(tarOf([ok, file('big', Buffer.alloc(200_000, 1)), file('zz', 'end')]), { level: 1 });
    await writeFile(join(base, 'trunc.gz'), good.subarray(0, Math.floor(good.length / 2)));
    await expectRejected(join(base, 'trunc.gz'));
    const corrupt = Buffer.from(good);
    for (let i = 40; i < 60; i++) corrupt[i] = (corrupt[i] ?? 0) ^ 0x5a;
    await writeFile(join(base, 'corrupt.gz'), corrupt);
    await expectRejected(join(base, 'corrupt.gz'));
    await writeFile(join(base, 'notgz.gz'), 'this is not gzip at all');
    await expectRejected(join(base, 'notgz.gz'));
    // No end-of-archive marker: the stream was cut at an entry boundary.
    await expectRejected(await blob([ok, file('b')], false));
    // Trailing garbage after the end marker.
    await expectRejected(await blob(Buffer.concat([tarOf([ok]), Buffer.from('garbage')])));
  });
  it('refuses a header with a bad checksum', async () => {
    const bad = file('bad', 'x');
    bad[0] = 'c'.charCodeAt(0);
    await expectRejected(await blob([ok, bad]));
  });
  it('refuses huge and malformed PAX headers', async () => {
    const huge = paxRecord('comment', Buffer.alloc(2 * 1024 * 1024, 0x61));
    await expectRejected(await blob([ok, rawPax(huge), rawHeader({ path: 'x', type: 'File' })]));
    await expectRejected(await blob([ok, rawPax(Buffer.from('99 path=short\n')), rawHeader({ path: 'x', type: 'File' })]));
    await expectRejected(await blob([ok, rawPax(Buffer.from('garbage')), rawHeader({ path: 'x', type: 'File' })]));
  });
  it('refuses too many entries', async () => {
    const limits: Limits = { ...defaultLimits, maxEntries: 3 };
    await expectRejected(await blob([ok, file('b'), file('c'), file('e'), file('f')]), 'e', limits);
  });
  it('stops a gzip bomb at the byte limit', async () => {
    const tar = tarOf([ok, file('bomb', Buffer.alloc(64 * 1024 * 1024))]);
    const path = await blob(tar);
    assert.ok((await lstat(path)).size < 1024 * 1024, 'bomb should compress well');
    await expectRejected(path, undefined, { ...defaultLimits, maxTotalBytes: 8 * 1024 * 1024 });
  });
  it('refuses xattrs that steer overlayfs', async () => {
    for (const name of ['trusted.overlay.redirect', 'trusted.overlay.opaque', 'trusted.overlay.metacopy', 'trusted.overlay.origin']) {
      await expectRejected(await blob([ok, dir('d', { xattrs: [[name, Buffer.from('/etc')]] })]), 'd');
    }
    await expectRejected(await blob([ok, file('x', 'x', { xattrs: [['bogus.ns', Buffer.from('1')]] })]), 'x');
  });
  it('refuses a full changeset whose entries lack their parents', async () => {
    await expectRejected(await blob([file('d/only')]), 'd/only', undefined, 'full');
  });

  // What passed validation before and then failed while being applied, leaving what was renamed in so far.
  describe('content the kernel would refuse halfway through staging', () => {
    const capV2 = (magic: number): Buffer => {
      const b = Buffer.alloc(20);
      b.writeUInt32LE(magic, 0);
      b.writeUInt32LE(0x400, 4);
      return b;
    };
    it('refuses a malformed security.capability (size, magic, v3 root id)', async () => {
      const tool = (v: Buffer): Piece => file('tool', 'x', { mode: 0o755, xattrs: [['security.capability', v]] });
      await expectRejected(await blob([ok, tool(capV2(0x0200_0001).subarray(0, 19))]), 'tool');
      await expectRejected(await blob([ok, tool(capV2(0x0100_0000))]), 'tool');
      await expectRejected(await blob([ok, tool(capV2(0x0200_0003))]), 'tool');
      const v3 = Buffer.concat([capV2(0x0300_0000), Buffer.from('ffffffff', 'hex')]);
      await expectRejected(await blob([ok, tool(v3)]), 'tool');
      // A v3 value in a v2 size, and the reverse.
      await expectRejected(await blob([ok, tool(capV2(0x0300_0000))]), 'tool');
      await expectRejected(await blob([ok, tool(Buffer.concat([capV2(0x0200_0000), Buffer.alloc(4)]))]), 'tool');
    });
    it('refuses a user.* xattr on a symlink, and ACLs the kernel refuses', async () => {
      await expectRejected(await blob([ok, entry({ path: 'ln', type: 'symlink', linkpath: 'aaa-first', xattrs: [['user.note', Buffer.from('x')]] })]), 'ln');
      const acl = (...entries: Array<[number, number, number]>): Buffer => {
        const b = Buffer.alloc(4 + 8 * entries.length);
        b.writeUInt32LE(2, 0);
        entries.forEach(([tag, perm, id], i) => {
          b.writeUInt16LE(tag, 4 + 8 * i);
          b.writeUInt16LE(perm, 6 + 8 * i);
          b.writeUInt32LE(id, 8 + 8 * i);
        });
        return b;
      };
      const minimal = acl([1, 6, 0xffffffff], [4, 4, 0xffffffff], [0x20, 4, 0xffffffff]);
      await expectRejected(await blob([ok, entry({ path: 'ln', type: 'symlink', linkpath: 'x', xattrs: [['system.posix_acl_access', minimal]] })]), 'ln');
      await expectRejected(await blob([ok, file('f', 'x', { xattrs: [['system.posix_acl_default', minimal]] })]), 'f');
      // A named user without a mask; out of order; a bad version.
      await expectRejected(await blob([ok, file('f', 'x', { xattrs: [['system.posix_acl_access', acl([1, 6, 0], [2, 6, 1000], [4, 4, 0], [0x20, 4, 0])]] })]), 'f');
      await expectRejected(await blob([ok, file('f', 'x', { xattrs: [['system.posix_acl_access', acl([4, 4, 0], [1, 6, 0], [0x20, 4, 0])]] })]), 'f');
      const v3 = Buffer.from(minimal);
      v3.writeUInt32LE(3, 0);
      await expectRejected(await blob([ok, file('f', 'x', { xattrs: [['system.posix_acl_access', v3]] })]), 'f');
    });
    it('refuses an mtime utimes cannot set (10^20 s)', async () => {
      const far = 10n ** 20n * 1_000_000_000n;
      await expectRejected(await blob([ok, file('f', 'x', { mtimeNs: far })]), 'f');
      await expectRejected(await blob([ok, dir('d', { mtimeNs: -(10n ** 12n) * 1_000_000_000n })]), 'd');
    });
    it('refuses an opaque marker at the root of a changeset', async () => {
      await expectRejected(await blob([ok, file('.wh..wh..opq', '')]), '.wh..wh..opq');
    });
    it('refuses a child before its new parent, and paths that do not fit PATH_MAX under the upper dir', async () => {
      await expectRejected(await blob([ok, file('newdir/x'), dir('newdir')]), 'newdir/x');
      // Within the changeset's own limit (4096 bytes) but not with the upper dir's path in front of it.
      const parts = [...Array.from({ length: 20 }, () => 'q'.repeat(200)), 'r'.repeat(60)];
      const deep = parts.join('/');
      assert.ok(Buffer.byteLength(deep) <= defaultLimits.maxPathBytes && Buffer.byteLength(upper) + 1 + deep.length > 4095);
      const pieces: Piece[] = [ok];
      for (let i = 1; i < parts.length; i++) pieces.push(dir(parts.slice(0, i).join('/')));
      pieces.push(file(deep));
      await expectRejected(await blob(pieces), deep);
      await expectRejected(await blob([ok, symlinkEntry('ln', 't'.repeat(4096))]), 'ln');
    });
    it('refuses a hard link whose target a later entry replaces, and an opaque marker that removes what an earlier entry needs', async () => {
      await expectRejected(await blob([ok, hardlinkEntry('h', 'd/kept'), file('d/kept', 'new')]), 'd/kept');
      await expectRejected(await blob([ok, file('d/sub/x'), file('d/.wh..wh..opq', '')]), 'd/.wh..wh..opq');
      await expectRejected(await blob([ok, hardlinkEntry('h', 'd/kept'), file('d/.wh..wh..opq', '')]), 'd/.wh..wh..opq');
    });
  });
});

// ext4 without `ea_inode` keeps all of an inode's xattrs in one block (about 4 KiB): values the VFS accepts
// (64 KiB) fail there with ENOSPC. A small ext4 of the test's own makes the case exact whatever /tmp is.
describe('staging refuses xattrs the target file system cannot hold', () => {
  let img = '';
  let mnt = '';
  let mounted = false;
  before(async () => {
    requireRoot();
    base = await mkdtemp('/tmp/twinlayer-cs-xattr-');
    img = join(base, 'fs.img');
    mnt = join(base, 'mnt');
    await mkdir(mnt);
    execFileSync('truncate', ['-s', '16M', img]);
    execFileSync('mkfs.ext4', ['-q', '-F', '-O', '^ea_inode', '-b', '4096', img]);
    execFileSync('mount', ['-o', 'loop', img, mnt]);
    mounted = true;
  });
  after(async () => {
    if (mounted) execFileSync('umount', [mnt]);
    if (base !== '') await rm(base, { recursive: true, force: true });
  });
  beforeEach(async () => {
    const caseDir = join(mnt, `case-${n++}`);
    upper = join(caseDir, 'upper');
    tmpDir = join(caseDir, 'tmp');
    sentinel = join(caseDir, 'sentinel');
    await mkdir(join(upper, 'd'), { recursive: true });
    await mkdir(tmpDir);
    await mkdir(sentinel);
  });

  it('refuses one value too large for an inode, and several that do not fit together; stages what fits', async () => {
    assert.equal((await statfs(mnt)).type, 0xef53, 'the case runs on ext4');
    const ok = file('aaa-first', 'fine');
    await expectRejected(await blob([ok, file('big', 'x', { xattrs: [['user.big', Buffer.alloc(8000, 1)]] })]), 'big');
    await expectRejected(await blob([ok, file('many', 'x', { xattrs: [['user.a', Buffer.alloc(1500, 1)], ['user.b', Buffer.alloc(1500, 2)], ['user.c', Buffer.alloc(1500, 3)]] })]), 'many');
    await expectRejected(await blob([ok, dir('d', { xattrs: [['trusted.big', Buffer.alloc(5000, 1)]] })]), 'd');
    const fits = await blob([ok, file('fits', 'x', { xattrs: [['user.a', Buffer.alloc(1500, 1)], ['user.b', Buffer.alloc(1500, 2)]] })]);
    await stageChangeset(fits, 'delta', { upperDir: upper, tmpDir });
    assert.match(xattrDump(join(upper, 'fits')), /user\.b=0x0202/);
    assert.deepEqual(await readdir(tmpDir), []);
  });
});

describe('staging writes the overlayfs objects exactly', () => {
  before(async () => {
    requireRoot();
    base = await mkdtemp('/tmp/twinlayer-cs-stage-');
  });
  after(async () => {
    if (base !== '') await rm(base, { recursive: true, force: true });
  });
  beforeEach(async () => {
    const caseDir = join(base, `case-${n++}`);
    upper = join(caseDir, 'upper');
    tmpDir = join(caseDir, 'tmp');
    await mkdir(join(upper, 'd/sub/deeper'), { recursive: true });
    await writeFile(join(upper, 'd/stale1'), 'old');
    await writeFile(join(upper, 'd/sub/deeper/stale2'), 'old');
    await writeFile(join(upper, 'd/keep'), 'old keep');
    await mkdir(join(upper, 'd2/inner'), { recursive: true });
    await writeFile(join(upper, 'd2/inner/f'), 'content');
  });

  const stage = (p: string, kind: 'delta' | 'full' = 'delta'): ReturnType<typeof stageChangeset> => stageChangeset(p, kind, { upperDir: upper, tmpDir });
  const getfattr = (p: string, name: string): string => {
    const out = execFileSync('getfattr', ['--absolute-names', '-h', '-n', name, '-e', 'hex', p]).toString();
    return out.split('\n').find((l) => l.startsWith(name + '='))?.slice(name.length + 1) ?? '';
  };

  it('an opaque marker removes stale children and marks the dir', async () => {
    const p = await blob([dir('d'), file('d/.wh..wh..opq', ''), file('d/keep', 'new keep'), dir('d/sub')]);
    const { ms, ...counts } = await stage(p);
    assert.deepEqual(counts, { entries: 4, files: 3, deletions: 0, bytes: 8 });
    assert.ok(Object.values(ms).every((v) => Number.isFinite(v) && v >= 0), `phase timings: ${JSON.stringify(ms)}`);
    assert.deepEqual((await readdir(join(upper, 'd'))).sort(), ['keep', 'sub']);
    assert.deepEqual(await readdir(join(upper, 'd/sub')), []);
    assert.equal(await readFile(join(upper, 'd/keep'), 'utf8'), 'new keep');
    assert.equal(getfattr(join(upper, 'd'), 'trusted.overlay.opaque'), '0x79');
    assert.deepEqual(await readdir(tmpDir), []);
  });

  it('a whiteout replaces a dir with content, and re-applying is harmless', async () => {
    const p = await blob([file('.wh.d2', ''), file('d/.wh.keep', '')]);
    for (let i = 0; i < 2; i++) {
      const r = await stage(p);
      assert.equal(r.deletions, 2);
      for (const w of ['d2', 'd/keep']) {
        const st = await lstat(join(upper, w));
        assert.ok(st.isCharacterDevice() && st.rdev === 0, `${w} is a whiteout`);
      }
      assert.deepEqual(await readdir(tmpDir), []);
    }
  });

  it('re-applying the same changeset converges to the same tree', async () => {
    const p = await blob([
      dir('d'), file('d/a', 'A'), hardlinkEntry('d/b', 'd/a'), symlinkEntry('d/c', '/usr/lib'), file('d/.wh.stale1', ''),
      dir('n', { mode: 0o750, uid: 1000, gid: 1000 }), file('n/x', 'x'),
    ]);
    await stage(p);
    const first = await snapshotTree(upper);
    await stage(p);
    const second = await snapshotTree(upper);
    assert.deepEqual([...second].map(([k, v]) => [k, { ...v, ino: 0n }]), [...first].map(([k, v]) => [k, { ...v, ino: 0n }]));
    assert.equal((await lstat(join(upper, 'd/a'))).ino, (await lstat(join(upper, 'd/b'))).ino);
    assert.equal((await lstat(join(upper, 'd/a'))).nlink, 2);
  });

  it('preserves setuid, file capabilities, high uids and fractional mtimes', async () => {
    // VFS_CAP_REVISION_2 with the effective flag, permitted = CAP_NET_BIND_SERVICE.
    const cap = Buffer.from('0100000200040000000000000000000000000000', 'hex');
    const p = await blob([
      dir('bin', { uid: 100000, gid: 100000, mode: 0o755 }),
      file('bin/tool', '#!/bin/sh\n', { mode: 0o4755, uid: 100000, gid: 100001, mtimeNs: 1_700_000_000_123_456_000n, xattrs: [['security.capability', cap], ['user.note', Buffer.from('hi')]] }),
      file('bin/sgid', 'x', { mode: 0o2755, uid: 4_000_000_000, gid: 100000 }),
    ]);
    await stage(p);
    const st = await lstat(join(upper, 'bin/tool'), { bigint: true });
    assert.equal(Number(st.mode) & 0o7777, 0o4755);
    assert.equal(st.uid, 100000n);
    assert.equal(st.gid, 100001n);
    assert.equal(st.mtimeNs / 1000n, 1_700_000_000_123_456n);
    assert.equal(getfattr(join(upper, 'bin/tool'), 'security.capability'), '0x' + cap.toString('hex'));
    assert.equal(getfattr(join(upper, 'bin/tool'), 'user.note'), '0x6869');
    const sg = await lstat(join(upper, 'bin/sgid'));
    assert.equal(sg.mode & 0o7777, 0o2755);
    assert.equal(sg.uid, 4_000_000_000);
    const bin = await lstat(join(upper, 'bin'));
    assert.equal(bin.uid, 100000);
  });

  it('sets mtimes before 1970 exactly (Node turns a negative number into "now")', async () => {
    const ns = -86_400n * 365n * 1_000_000_000n + 250_000_000n;
    await stage(await blob([file('old', 'x', { mtimeNs: ns }), dir('olddir', { mtimeNs: ns })]));
    for (const p of ['old', 'olddir']) assert.equal((await lstat(join(upper, p), { bigint: true })).mtimeNs, ns, p);
  });

  it('a full changeset leaves exactly its own paths', async () => {
    const p = await blob([dir('d'), file('d/keep', 'k'), file('.wh.gone', ''), entry({ path: 'top', type: 'symlink', linkpath: 'd/keep' })]);
    await stage(p, 'full');
    const snap = await snapshotTree(upper);
    assert.deepEqual([...snap.keys()].sort(), ['d', 'd/keep', 'gone', 'top']);
  });
});
