// Racy clean (git's Documentation/technical/racy-git.txt): the tracker compares inode, size, mtime and ctime with
// what it shipped, and a same-size rewrite in the same timestamp tick as the read before it changes none of them.
// Real overlayfs over a loop-mounted ext3, which stamps from the coarse clock (see test/support/coarse-fs.ts):
// write, build and commit, rewrite in place within the same tick, build — the rewrite must ship. Root only.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { lstat, mkdir, mkdtemp, open, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { UpperTracker, defaultLimits, type BuiltChangeset } from '../../../src/changeset/index.js';
import { readChangeset } from '../../../src/changeset/tar-reader.js';
import { mountExt3, nextTimestampTick, type LoopFs } from '../../support/coarse-fs.js';
import { makeOverlayDirs, mountOverlay, requireRoot, unmountQuietly, type OverlayDirs } from '../../support/overlay.js';

const run = promisify(execFile);

/** What a changeset holds for `path`: its content and xattr names, or null when it is not in it. */
async function shippedOf(built: BuiltChangeset | null, path: string): Promise<{ data: string; xattrs: string[] } | null> {
  if (built === null) return null;
  let found: { data: string; xattrs: string[] } | null = null;
  await readChangeset(built.file, defaultLimits, async (e, body) => {
    const parts: Buffer[] = [];
    for await (const c of body.chunks()) parts.push(Buffer.from(c));
    if (e.path === path) found = { data: Buffer.concat(parts).toString('utf8'), xattrs: e.xattrs.map(([n]) => n) };
  });
  return found;
}

/** Overwrites the first bytes in place (no truncate, no new inode): only the timestamps could tell. */
async function rewriteInPlace(path: string, data: string): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.write(data, 0);
  } finally {
    await fh.close();
  }
}

function sameStat(a: { ino: bigint; size: bigint; mtimeNs: bigint; ctimeNs: bigint }, b: typeof a): boolean {
  return a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;
}

/** Which shipped-index record fields `path` has in the tracker's serialized state. */
function recOf(tracker: UpperTracker, path: string): Record<string, unknown> {
  const entry = tracker.serialize().entries.find(([p]) => p === path);
  assert.ok(entry !== undefined, `${path} is in the shipped index`);
  return entry[1] as Record<string, unknown>;
}

/** Waits (bounded) until `path`'s ctime is 2 s old: past the racy window of any filesystem here (one second
 *  for whole-second timestamps, plus the tracker's margin). */
async function waitTimestampsSettled(path: string): Promise<void> {
  const settledAt = Number((await lstat(path, { bigint: true })).ctimeNs / 1_000_000n) + 2000;
  for (let i = 0; i < 300 && Date.now() < settledAt; i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(Date.now() >= settledAt, 'the timestamps settled');
}

describe('racy clean: same-size rewrites within one timestamp tick', { timeout: 180_000 }, () => {
  let base = '';
  const filesystems: LoopFs[] = [];
  const overlays: OverlayDirs[] = [];

  before(async () => {
    requireRoot();
    base = await mkdtemp('/tmp/twinlayer-racy-');
  });
  after(async () => {
    for (const o of overlays) await unmountQuietly(o);
    for (const f of filesystems) await f.unmount();
    if (base !== '') await rm(base, { recursive: true, force: true });
  });

  async function overlayOn(fsOpts: { secondTimestamps: boolean }, name: string): Promise<{ dirs: OverlayDirs; tracker: UpperTracker; probe: string }> {
    const fs = await mountExt3(base, `${name}-fs`, { sizeMb: 64, ...fsOpts });
    filesystems.push(fs);
    const lower = join(base, `${name}-lower`);
    await mkdir(lower, { recursive: true });
    const dirs = await makeOverlayDirs(fs.dir, 'o', lower);
    await mountOverlay(dirs);
    overlays.push(dirs);
    const tracker = new UpperTracker({ upperDir: dirs.upper, workDir: join(base, `${name}-work`) });
    await writeFile(join(dirs.merged, 'f'), 'init');
    const first = await tracker.build('full');
    assert.ok(first !== null);
    tracker.commit(first);
    await rm(first.file);
    return { dirs, tracker, probe: join(fs.dir, 'tick-probe') };
  }

  /** Ships `built` (when not null) and returns what it held for f. */
  async function ship(tracker: UpperTracker, built: BuiltChangeset | null): Promise<{ data: string; xattrs: string[] } | null> {
    const got = await shippedOf(built, 'f');
    if (built !== null) {
      tracker.commit(built);
      await rm(built.file);
    }
    return got;
  }

  it('ships every same-size rewrite made within one timestamp tick, with a build between each (whole-second stamps)', async () => {
    // A tick of a second makes the race certain; the 4 ms tick of nanosecond stamps is the same problem, but a build
    // on this machine (a getfattr spawn between the stat and the read) rarely fits inside one.
    const { dirs, tracker, probe } = await overlayOn({ secondTimestamps: true }, 'sec');
    const mergedF = join(dirs.merged, 'f');
    const upperF = join(dirs.upper, 'f');
    const missed: string[] = [];
    let hidden = 0;
    for (const values of [['aaaa', 'bbbb', 'cccc', 'dddd'], ['eeee', 'ffff', 'gggg']]) {
      await nextTimestampTick(probe);
      for (const v of values) {
        const before = await lstat(upperF, { bigint: true });
        await rewriteInPlace(mergedF, v);
        if (sameStat(before, await lstat(upperF, { bigint: true }))) hidden++;
        const got = await ship(tracker, await tracker.build(new Set(['f'])));
        if (got?.data !== v) missed.push(`${v} (shipped ${got?.data ?? 'nothing'})`);
      }
    }
    assert.equal((await lstat(upperF, { bigint: true })).ctimeNs % 1_000_000_000n, 0n, 'whole-second timestamps');
    // Otherwise no rewrite hid behind an unchanged stat and the test would prove nothing.
    assert.ok(hidden >= 2, `only ${hidden} rewrites left the stat unchanged`);
    assert.deepEqual(missed, [], `rewrites not shipped (${hidden} left the stat unchanged)`);

    // An xattr set within the same second changes no stat field either: the fingerprint holds the xattrs.
    await nextTimestampTick(probe);
    await rewriteInPlace(mergedF, 'hhhh');
    assert.equal((await ship(tracker, await tracker.build(new Set(['f']))))?.data, 'hhhh');
    const before = await lstat(upperF, { bigint: true });
    await run('setfattr', ['-n', 'user.twinlayer-test', '-v', 'set', mergedF]);
    assert.ok(sameStat(before, await lstat(upperF, { bigint: true })), 'setfattr within the second left the stat unchanged');
    assert.deepEqual((await ship(tracker, await tracker.build(new Set(['f']))))?.xattrs, ['user.twinlayer-test']);

    await waitTimestampsSettled(upperF);
    assert.equal(await tracker.build('reconcile'), null, 'idle after the window: nothing ships');
    assert.equal(recOf(tracker, 'f')['h'], undefined, 'the racy mark is dropped once the timestamps are old enough');
  });

  it('keeps a node shipped within a tick of its change dirty, by content, until its timestamps are old (nanosecond stamps)', async () => {
    const { dirs, tracker } = await overlayOn({ secondTimestamps: false }, 'ns');
    const mergedF = join(dirs.merged, 'f');
    const upperF = join(dirs.upper, 'f');
    await mkdir(join(dirs.merged, 'd'));
    await symlink('f', join(dirs.merged, 'd/link'));
    await rewriteInPlace(mergedF, 'aaaa');
    const built = await tracker.build('reconcile');
    assert.equal((await ship(tracker, built))?.data, 'aaaa');
    for (const p of ['f', 'd', 'd/link']) assert.match(String(recOf(tracker, p)['h']), /^[0-9a-f]{64}$/, `${p} shipped within the window carries its fingerprint`);
    assert.notEqual(recOf(tracker, 'd')['h'], recOf(tracker, 'd/link')['h']);
    // Its stat is not trusted now, its content is: the same content ships nothing.
    assert.equal(await tracker.build('reconcile'), null, 'same content: nothing ships');

    await waitTimestampsSettled(upperF);
    assert.equal(await tracker.build('reconcile'), null, 'same content after the window: nothing ships');
    for (const p of ['f', 'd', 'd/link']) assert.equal(recOf(tracker, p)['h'], undefined, `${p}: the racy mark is dropped`);
    for (let i = 0; i < 3; i++) assert.equal(await tracker.build('reconcile'), null, 'an idle upper dir ships nothing');
    // A change shipped long after it was made is clean by stat at once: no fingerprint, no later content check.
    await rewriteInPlace(mergedF, 'bbbb');
    await waitTimestampsSettled(upperF);
    assert.equal((await ship(tracker, await tracker.build(new Set(['f']))))?.data, 'bbbb');
    assert.equal(recOf(tracker, 'f')['h'], undefined);
  });
});
