// Filesystems that stamp files from the kernel's coarse clock, for the racy-clean tests (git's
// Documentation/technical/racy-git.txt): a loop-mounted ext3, and a wait for the start of its next timestamp tick.
//
// Why ext3: since Linux 6.13, ext4, xfs, btrfs and tmpfs use multigrain timestamps — once a stat has looked at an
// inode, its next change gets a fine-grained stamp — which hides the problem on this machine's 6.18 kernel. The
// ext3 type (served by the ext4 driver) does not opt in, so it stamps like every filesystem did before 6.13 (Debian
// 12 ships 6.1): the coarse clock, one value per jiffy (4 ms here), or per second with 128-byte inodes.
import { execFile } from 'node:child_process';
import { mkdir, open, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface LoopFs {
  dir: string;
  unmount(): Promise<void>;
}

/** A fresh sparse ext3 image under `base`, loop-mounted at `base/<name>`. `secondTimestamps`: 128-byte inodes,
 *  which store whole seconds only. */
export async function mountExt3(base: string, name: string, opts: { sizeMb: number; secondTimestamps?: boolean }): Promise<LoopFs> {
  const img = join(base, `${name}.img`);
  const dir = join(base, name);
  await mkdir(dir, { recursive: true });
  await run('truncate', ['-s', `${opts.sizeMb}M`, img]);
  await run('mkfs.ext3', ['-q', '-F', ...(opts.secondTimestamps === true ? ['-I', '128'] : []), img], { timeout: 60_000 });
  await run('mount', ['-o', 'loop', img, dir]);
  let mounted = true;
  return {
    dir,
    async unmount() {
      if (!mounted) return;
      // mount -o loop sets autoclear: the loop device goes with the last unmount.
      await run('umount', [dir]);
      mounted = false;
      await rm(img, { force: true });
    },
  };
}

/** Returns just after the filesystem's timestamp clock ticked: rewrites `probe` (on that filesystem) until its
 *  ctime moves. What follows has (nearly) a whole tick before the next one. Bounded by `maxMs`. */
export async function nextTimestampTick(probe: string, maxMs = 3000): Promise<void> {
  const fh = await open(probe, 'w');
  try {
    await fh.write('x', 0);
    const first = (await stat(probe, { bigint: true })).ctimeNs;
    const deadline = Date.now() + maxMs;
    for (let i = 0; Date.now() < deadline; i++) {
      await fh.write(i % 2 === 0 ? 'y' : 'x', 0);
      if ((await stat(probe, { bigint: true })).ctimeNs !== first) return;
    }
    throw new Error(`the timestamps of ${probe} did not move within ${maxMs} ms`);
  } finally {
    await fh.close();
  }
}
