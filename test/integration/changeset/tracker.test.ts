// Pusher-side rules that need no overlay mount: names the format cannot carry, excludes, special files,
// hard-link groups and the tracker's own state. Root only (mknod for a whiteout and a FIFO).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { link, mkdir, mkdtemp, readdir, rm, unlink, writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { join } from 'node:path';
import { createLogger } from '../../../src/log/logger.js';
import { UpperTracker, defaultLimits, relPathIsExcluded, stageChangeset } from '../../../src/changeset/index.js';
import { readChangeset } from '../../../src/changeset/tar-reader.js';
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
      const tracker = new UpperTracker({ upperDir: upper, workDir: join(base, 'w3') });
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
    assert.deepEqual(await list(second.file), ['dir:a', 'file:a/.wh.tmp(remove)', 'file:a/one', 'hardlink:b/two->a/one']);
    assert.deepEqual(second.counts, { files: 3, deletions: 1, bytes: 30 });
    tracker.commit(second);
    await rm(second.file);
    // The serialized state round-trips through JSON.
    const revived = new UpperTracker({ upperDir: upper, workDir: join(base, 'w2'), shipped: JSON.parse(JSON.stringify(tracker.serialize())) as ReturnType<UpperTracker['serialize']> });
    assert.equal(await revived.build('reconcile'), null);
    assert.throws(() => new UpperTracker({ upperDir: upper, workDir: base, shipped: { version: 1, entries: [['x', { t: 'bogus' }]] } }));
  });
});
