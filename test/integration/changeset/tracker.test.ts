// Pusher-side rules that need no overlay mount: names the format cannot carry, excludes, special files,
// hard-link groups and the tracker's own state. Root only (mknod for a whiteout and a FIFO).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { chmod, chown, link, lstat, mkdir, mkdtemp, readFile, readdir, rm, unlink, utimes, writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { join } from 'node:path';
import { createLogger } from '../../../src/log/logger.js';
import { UpperTracker, defaultLimits, relPathIsExcluded, stageChangeset } from '../../../src/changeset/index.js';
import { readChangeset } from '../../../src/changeset/tar-reader.js';
import type { TarEntry } from '../../../src/changeset/tar-format.js';
import { racyWindowNs } from '../../../src/changeset/racy.js';
import { requireRoot } from '../../support/overlay.js';

async function list(file: string): Promise<string[]> {
  const out: string[] = [];
  await readChangeset(file, defaultLimits, async (e) => {
    out.push(`${e.type}:${e.path}${e.linkpath === undefined ? '' : `->${e.linkpath}`}${e.removeOnly === true ? '(remove)' : ''}`);
    await Promise.resolve();
  });
  return out;
}

describe('UpperTracker on a plain upper dir', () => {
  let base = '';
  before(async () => {
    requireRoot();
    base = await mkdtemp('/tmp/twinlayer-cs-tracker-');
  });
  after(async () => {
    if (base !== '') await rm(base, { recursive: true, force: true });
  });

  it('skips .wh.* names with a warning, honours excludes, refuses special files', async () => {
    const upper = join(base, 'u1');
    await mkdir(join(upper, 'etc'), { recursive: true });
    await writeFile(join(upper, 'etc/app.conf'), 'x');
    await writeFile(join(upper, 'etc/.wh.sneaky'), 'container chose this name');
    await writeFile(join(upper, 'etc/hosts'), 'managed by docker');
    await mkdir(join(upper, 'var/cache/apt'), { recursive: true });
    await writeFile(join(upper, 'var/cache/apt/pkg'), 'cache');
    execFileSync('mkfifo', [join(upper, 'etc/fifo')]);
    execFileSync('mknod', [join(upper, 'gone'), 'c', '0', '0']);
    const lines: string[] = [];
    const log = createLogger({ write: (l) => lines.push(l) });
    const excludes = ['/etc/hosts', 'var/cache/**'];
    const tracker = new UpperTracker({ upperDir: upper, workDir: join(base, 'w1'), excludes, log });
    const built = await tracker.build('full');
    assert.ok(built !== null);
    assert.deepEqual(await list(built.file), ['file:.wh.gone', 'dir:etc', 'file:etc/app.conf', 'dir:var']);
    assert.deepEqual(built.counts, { files: 3, deletions: 1, bytes: 1 });
    assert.ok(lines.some((l) => l.includes('etc/.wh.sneaky')), 'warned about the .wh. name');
    assert.ok(lines.some((l) => l.includes('etc/fifo')), 'warned about the FIFO');
    assert.ok(relPathIsExcluded('var/cache/apt/pkg', excludes));
    tracker.commit(built);
    await rm(built.file);
    assert.equal(await tracker.build('reconcile'), null);
    assert.equal(await tracker.build(new Set(['etc/hosts', 'var/cache/apt/pkg', 'etc/.wh.sneaky'])), null);
  });

  it('an empty upper dir: a full build ships nothing unless asked for an empty full, which stages as "the tree is empty"', async () => {
    const upper = join(base, 'empty');
    await mkdir(upper);
    const tracker = new UpperTracker({ upperDir: upper, workDir: join(base, 'w-empty') });
    assert.equal(await tracker.build('full'), null, 'without emptyFull nothing ships');
    const built = await tracker.build('full', { emptyFull: true });
    assert.ok(built !== null, 'the first full of a container that never wrote is a changeset all the same');
    assert.equal(built.kind, 'full');
    assert.deepEqual(built.counts, { files: 0, deletions: 0, bytes: 0 });
    assert.deepEqual(await list(built.file), [], 'a valid tar with no entries');
    tracker.commit(built);
    // Later builds with nothing in them are still not published, whatever the scope.
    assert.equal(await tracker.build('reconcile', { emptyFull: true }), null);
    assert.equal(await tracker.build(new Set(['etc']), { emptyFull: true }), null);
    // Staged into a fresh twin: nothing to do; into a twin holding stale files: a full prunes what it does not name.
    const fresh = join(base, 'twin-fresh');
    await mkdir(fresh);
    await stageChangeset(built.file, built.kind, { upperDir: fresh, tmpDir: join(base, 'tmp-fresh') });
    assert.deepEqual(await readdir(fresh), []);
    const stale = join(base, 'twin-stale');
    await mkdir(join(stale, 'etc/app'), { recursive: true });
    await writeFile(join(stale, 'etc/app/old.conf'), 'stale');
    await writeFile(join(stale, 'top'), 'stale');
    await stageChangeset(built.file, built.kind, { upperDir: stale, tmpDir: join(base, 'tmp-stale') });
    assert.deepEqual(await readdir(stale), [], 'an empty full clears a twin that held stale files');
    await rm(built.file);
  });

  it('never ships a file torn by a concurrent writer', async () => {
    const upper = join(base, 'u3');
    await mkdir(upper, { recursive: true });
    const size = 1024 * 1024;
    await writeFile(join(upper, 'f'), Buffer.alloc(size, 0x61));
    // Rewrites the file (truncate, then write) with alternating content, for at most 20 s.
    const script = `const fs = require('fs'); const end = Date.now() + 20000; let i = 0;
      while (Date.now() < end) { fs.writeFileSync(process.argv[1], Buffer.alloc(${size}, i++ % 2 ? 0x61 : 0x62)); }`;
    const writer = spawn(process.execPath, ['-e', script, join(upper, 'f')], { stdio: 'ignore' });
    try {
    const tracker = new UpperTracker({ upperDir: upper, workDir: join(base, 'w-parents') });
      let shipped = 0;
      let torn = 0;
      for (let i = 0; i < 40; i++) {
        const built = await tracker.build(new Set(['f']));
        if (built === null) {
          torn++;
          continue;
        }
        torn += built.torn.length;
        await readChangeset(built.file, defaultLimits, async (e, body) => {
          const parts: Buffer[] = [];
          for await (const c of body.chunks()) parts.push(Buffer.from(c));
          const data = Buffer.concat(parts);
          if (e.path !== 'f') return;
          shipped++;
          // Empty is a real state between the writer's truncate and write; anything else must be whole.
          assert.ok(data.length === 0 || data.length === size, `shipped ${data.length} bytes: a partial write`);
          const first = data[0] ?? 0;
          assert.ok(data.every((b) => b === first), 'shipped a file mixing two versions');
        });
        await rm(built.file);
      }
      assert.equal(shipped + torn, 40);
      if (process.env['TWINLAYER_CS_DEBUG'] === '1') console.error(`torn ${torn} shipped ${shipped}`);
    } finally {
      writer.kill();
      if (writer.exitCode === null && writer.signalCode === null) await once(writer, 'exit');
    }
  });

  it('leaves out of a delta an empty file changed within a tick (opened with O_TRUNC, not yet written) and ships it once settled', async () => {
    const upper = join(base, 'u-trunc');
    await mkdir(join(upper, 'etc'), { recursive: true });
    await writeFile(join(upper, 'etc/app.conf'), 'version 1\n');
    const tracker = new UpperTracker({ upperDir: upper, workDir: join(base, 'w-trunc') });
    const first = await tracker.build('full');
    assert.ok(first !== null);
    tracker.commit(first);
    await rm(first.file);
    // What `echo … > etc/app.conf` leaves between its open and its write: the leading flush comes right then. The
    // rule holds for a build that starts within the window of the change; a machine so loaded that the build starts
    // later is tried again (bounded), and never taken for a pass.
    let checked = false;
    for (let attempt = 0; attempt < 5 && !checked; attempt++) {
      await writeFile(join(upper, 'etc/app.conf'), '');
      const { ctimeNs } = await lstat(join(upper, 'etc/app.conf'), { bigint: true });
      const early = await tracker.build(new Set(['etc/app.conf']));
      const builtBy = BigInt(Date.now()) * 1_000_000n;
      const within = ctimeNs + racyWindowNs(ctimeNs) > builtBy;
      if (within) {
        assert.ok(early === null || !(await list(early.file)).includes('file:etc/app.conf'), 'the empty file is not shipped while its change is within a tick');
        assert.deepEqual(early?.torn ?? tracker.torn, ['etc/app.conf'], 'it is handed back as torn, to be built again');
        checked = true;
      }
      if (early !== null) {
        tracker.commit(early);
        await rm(early.file);
      }
      if (!checked) await writeFile(join(upper, 'etc/app.conf'), 'version 1\n');
    }
    assert.ok(checked, 'no build started within the window of its change in 5 attempts');
    // Once its change is older than the racy window (a tick and the margin), the file ships as it is: empty.
    const st = await lstat(join(upper, 'etc/app.conf'), { bigint: true });
    await new Promise((r) => setTimeout(r, Number(racyWindowNs(st.ctimeNs) / 1_000_000n) + 20));
    const settled = await tracker.build(new Set(['etc/app.conf']));
    assert.ok(settled !== null);
    assert.deepEqual(await list(settled.file), ['dir:etc', 'file:etc/app.conf']);
    assert.deepEqual(settled.torn, []);
    await rm(settled.file);
    // A file with content ships at once, within the tick or not.
    await writeFile(join(upper, 'etc/app.conf'), 'version 2\n');
    const written = await tracker.build(new Set(['etc/app.conf']));
    assert.ok(written !== null);
    assert.deepEqual(await list(written.file), ['dir:etc', 'file:etc/app.conf']);
    await rm(written.file);
  });

  it('ships hard-link siblings together and removals of upper-only paths as remove-only whiteouts', async () => {
    const upper = join(base, 'u2');
    await mkdir(join(upper, 'a'), { recursive: true });
    await mkdir(join(upper, 'b'), { recursive: true });
    await writeFile(join(upper, 'a/one'), 'shared');
    await link(join(upper, 'a/one'), join(upper, 'b/two'));
    await writeFile(join(upper, 'a/tmp'), 'short-lived');
    const tracker = new UpperTracker({ upperDir: upper, workDir: join(base, 'w2') });
    const first = await tracker.build('full');
    assert.ok(first !== null);
    assert.deepEqual(await list(first.file), ['dir:a', 'file:a/one', 'file:a/tmp', 'dir:b', 'hardlink:b/two->a/one']);
    tracker.commit(first);
    await rm(first.file);
    await unlink(join(upper, 'a/tmp'));
    await writeFile(join(upper, 'b/two'), 'changed through the other name');
    // a/one is named by no event, but shares b/two's inode: it ships too, first, with b/two linked to it.
    const second = await tracker.build(new Set(['a/tmp', 'b/two']));
    assert.ok(second !== null);
    assert.deepEqual(await list(second.file), ['dir:a', 'file:a/.wh.tmp(remove)', 'file:a/one', 'dir:b', 'hardlink:b/two->a/one']);
    assert.deepEqual(second.counts, { files: 4, deletions: 1, bytes: 30 });
    tracker.commit(second);
    await rm(second.file);
    // The serialized state round-trips through JSON.
    const revived = new UpperTracker({ upperDir: upper, workDir: join(base, 'w2'), shipped: JSON.parse(JSON.stringify(tracker.serialize())) as ReturnType<UpperTracker['serialize']> });
    assert.equal(await revived.build('reconcile'), null);
    assert.throws(() => new UpperTracker({ upperDir: upper, workDir: base, shipped: { version: 1, entries: [['x', { t: 'bogus' }]] } }));
  });

  it('ships every parent dir of what changed with its mode, owner, xattrs and mtime; staging it clobbers nothing and keeps an opaque flag', async () => {
    const upper = join(base, 'u-parents');
    const deep = join(upper, 'srv/data/deep');
    await mkdir(deep, { recursive: true });
    await writeFile(join(deep, 'f'), 'one');
    await writeFile(join(upper, 'srv/data/other'), 'other');
    await mkdir(join(upper, 'o'));
    await writeFile(join(upper, 'o/x'), 'x1');
    await writeFile(join(upper, 'o/y'), 'y1');
    execFileSync('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', join(upper, 'o')]);
    await chown(join(upper, 'srv/data'), 1234, 5678);
    await chmod(join(upper, 'srv/data'), 0o750);
    execFileSync('setfattr', ['-n', 'user.tag', '-v', 'kept', join(upper, 'srv/data')]);
    await utimes(join(upper, 'srv/data'), 1_000_000, 1_000_000);
    const tracker = new UpperTracker({ upperDir: upper, workDir: join(base, 'w-parents') });
    const first = await tracker.build('full');
    assert.ok(first !== null);
    tracker.commit(first);
    const twin = join(base, 'twin-parents');
    await mkdir(twin);
    await stageChangeset(first.file, first.kind, { upperDir: twin, tmpDir: join(base, 'tmp-parents') });
    await rm(first.file);

    // Rewritten in place, and one removal: no dir above them changed, yet every one ships.
    await writeFile(join(deep, 'f'), 'two');
    await unlink(join(upper, 'srv/data/other'));
    await writeFile(join(upper, 'o/x'), 'x2');
    const delta = await tracker.build(new Set(['srv/data/deep/f', 'srv/data/other', 'o/x']));
    assert.ok(delta !== null);
    assert.deepEqual(await list(delta.file), ['dir:o', 'file:o/x', 'dir:srv', 'dir:srv/data', 'file:srv/data/.wh.other(remove)', 'dir:srv/data/deep', 'file:srv/data/deep/f']);
    const entries = new Map<string, TarEntry>();
    await readChangeset(delta.file, defaultLimits, async (e) => {
      entries.set(e.path, e);
      await Promise.resolve();
    });
    const data = entries.get('srv/data');
    assert.ok(data);
    assert.deepEqual([data.mode, data.uid, data.gid], [0o750, 1234, 5678], 'the parent carries its real mode and owner');
    assert.equal(data.mtimeNs, (await lstat(join(upper, 'srv/data'), { bigint: true })).mtimeNs, 'and its mtime as in the upper dir');
    assert.deepEqual(data.xattrs.map(([n, v]) => [n, v.toString()]), [['user.tag', 'kept']], 'and its xattrs');
    assert.deepEqual(entries.get('o')?.xattrs, [], 'an opaque parent carries no overlay xattr, and no marker (a marker would prune)');
    tracker.commit(delta);

    // Staged twice (a retry): the twin equals the primary's upper dir, the other children of the opaque dir stay.
    for (let i = 0; i < 2; i++) await stageChangeset(delta.file, delta.kind, { upperDir: twin, tmpDir: join(base, 'tmp-parents') });
    const [got, want] = [await treeState(twin), await treeState(upper)];
    assert.deepEqual(got.map((e) => e.text), want.map((e) => e.text));
    // utimes(2) takes a double: the times agree to well within a microsecond.
    got.forEach((e, i) => assert.ok(Math.abs(Number(e.mtimeNs - want[i]!.mtimeNs)) < 1000, `${e.text}: mtime ${e.mtimeNs} vs ${want[i]!.mtimeNs}`));
    assert.equal(await readFile(join(twin, 'o/y'), 'utf8'), 'y1');
    assert.equal(execFileSync('getfattr', ['--only-values', '-n', 'trusted.overlay.opaque', join(twin, 'o')]).toString(), 'y');
    await rm(delta.file);
  });
});

/** Every path under `dir` with its kind, mode, owner, xattrs and content, and its mtime. */
async function treeState(dir: string): Promise<Array<{ text: string; mtimeNs: bigint }>> {
  const out: Array<{ text: string; mtimeNs: bigint }> = [];
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(join(dir, rel))).sort()) {
      const p = rel === '' ? name : `${rel}/${name}`;
      const st = await lstat(join(dir, p), { bigint: true });
      const x = execFileSync('getfattr', ['--absolute-names', '-h', '-d', '-m', '-', '-e', 'hex', join(dir, p)]).toString().split('\n').filter((l) => l.includes('=')).sort().join(',');
      const body = st.isFile() ? await readFile(join(dir, p), 'utf8') : '';
      out.push({ text: `${p} ${st.mode.toString(8)} ${st.uid}:${st.gid} [${x}] ${body}`, mtimeNs: st.mtimeNs });
      if (st.isDirectory()) await walk(p);
    }
  };
  await walk('');
  return out;
}
