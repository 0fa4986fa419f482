// What a commit syncs before it is recorded: a small commit of files and directories, each of them (no syncfs, which
// flushes every writer's data on the file system); anything a path-by-path sync does not cover, the whole file system.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { CommitSync, SMALL_COMMIT_PATHS } from '../../../src/changeset/commit-sync.js';

describe('CommitSync', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'twinlayer-commit-sync-'));
    await mkdir(join(dir, 'etc'));
    await writeFile(join(dir, 'etc', 'app.conf'), 'x');
    await symlink('/etc/passwd', join(dir, 'link'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const counting = (): { calls: string[]; sync: CommitSync } => {
    const calls: string[] = [];
    return { calls, sync: new CommitSync((d) => Promise.resolve(void calls.push(d))) };
  };

  it('syncs a few files and directories one by one, not the whole file system', async () => {
    const { calls, sync } = counting();
    sync.add(join(dir, 'etc', 'app.conf'));
    sync.add(join(dir, 'etc'));
    sync.add(dir);
    assert.equal(sync.whole, false);
    await sync.sync(dir);
    assert.deepEqual(calls, []);
  });

  it('syncs the whole file system for what it cannot sync alone: a symlink, a path gone', async () => {
    for (const path of [join(dir, 'link'), join(dir, 'gone')]) {
      const { calls, sync } = counting();
      sync.add(join(dir, 'etc', 'app.conf'));
      sync.add(path);
      await sync.sync(dir);
      assert.deepEqual(calls, [dir], path);
    }
  });

  it('fails with a path whose fsync fails, and does not fall back to syncing the file system', async () => {
    // procfs refuses fsync (EINVAL) as a failing disk refuses it (EIO): after a failed fsync the kernel has dropped the
    // dirty pages, and a syncfs now might not report it, so the commit must not be recorded.
    const { calls, sync } = counting();
    sync.add('/proc/self/status');
    await assert.rejects(sync.sync(dir), (err: NodeJS.ErrnoException) => err.code === 'EINVAL');
    assert.deepEqual(calls, []);
  });

  it('syncs the whole file system when told to, and past its bound', async () => {
    const told = counting();
    told.sync.add(join(dir, 'etc'));
    told.sync.wholeFileSystem();
    told.sync.add(join(dir, 'etc', 'app.conf'));
    assert.equal(told.sync.whole, true);
    await told.sync.sync(dir);
    assert.deepEqual(told.calls, [dir]);

    const many = counting();
    for (let i = 0; i <= SMALL_COMMIT_PATHS; i++) many.sync.add(join(dir, `f${i}`));
    assert.equal(many.sync.whole, true);
    await many.sync.sync(dir);
    assert.deepEqual(many.calls, [dir]);
  });
});
