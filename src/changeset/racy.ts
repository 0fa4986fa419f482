// Racy clean (git's Documentation/technical/racy-git.txt). The kernel stamps a change with its coarse clock, one
// value per tick, so a same-size rewrite in the tick of the change a scan saw leaves inode, size, mtime and ctime
// as they were: a stat comparison cannot see it. A node whose last change (ctime) is not older than the scan's start
// by more than one tick is therefore shipped with a fingerprint of what was read, and stays dirty: the next scan
// that looks at it compares the fingerprint (content, link target, xattrs) instead of trusting the stat, until its
// timestamps are old enough. Only ctime counts: the container can set mtime to anything (touch -d, tar -x), and a
// future mtime would keep a file racy for as long; the kernel sets ctime from its own clock on every change.
//
// The window. Measured on this project's machine (kernel 6.18, HZ=250): consecutive coarse timestamps of a tight
// write loop step by 4 ms, and a fresh file's ctime lags the realtime clock read just before the write by at most
// 3.7 ms (5000 samples). A tick is 1-10 ms for HZ 1000-100. The margin, 50 ms, covers ten ticks at HZ=250 and five
// at HZ=100 (a late tick under virtualization or NO_HZ included), plus the millisecond truncation of Date.now(); it
// does not exceed the pusher's default quiet time (debounceQuietMs, 50 ms), so the trailing flush of a burst finds
// it clean by stat. The leading flush (the burst's first event, shipped at once) finds what it ships racy: those
// nodes carry their fingerprint until a later scan sees them settled. Filesystems with whole-second timestamps (ext3/ext4 with 128-byte inodes)
// give a ctime without nanoseconds: for those the tick is a second. Kernels from 6.13 on give ext4, xfs, btrfs and
// tmpfs fine-grained stamps once a stat has looked (multigrain timestamps), which hides the problem there; earlier
// kernels (Debian 12 ships 6.1) and other filesystems do not.
import { createHash, type Hash } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { readFileStable, readLinkStable } from './stable-read.js';
import type { Cand } from './upper-node.js';
import type { Xattrs } from './xattr.js';

const msNs = 1_000_000n;
const secondNs = 1_000_000_000n;
export const racyMarginNs = 50n * msNs;

/** How long after a change stamped `ctimeNs` a later change may still carry the same stamp, plus the margin. */
export function racyWindowNs(ctimeNs: bigint): bigint {
  return ctimeNs % secondNs === 0n ? secondNs + racyMarginNs : racyMarginNs;
}

/** The scan's start on the clock the kernel stamps with (realtime); taken before the scan's first stat. */
export function scanClockNs(): bigint {
  return BigInt(Date.now()) * msNs;
}

/** The node may change again without its stat showing it: its last change is within the window of `scanStartNs`. */
export function isRacy(st: Pick<BigIntStats, 'ctimeNs'>, scanStartNs: bigint): boolean {
  return st.ctimeNs + racyWindowNs(st.ctimeNs) > scanStartNs;
}

/** Changed within the window of `scanStartNs` and not from the future: a ctime more than a second ahead of the scan
 *  (the clock stepped back since) says nothing about a writer at work now. */
export function isJustChanged(st: Pick<BigIntStats, 'ctimeNs'>, scanStartNs: bigint): boolean {
  return isRacy(st, scanStartNs) && st.ctimeNs <= scanStartNs + secondNs;
}

/** The fingerprint of a racily clean node: its shipped xattrs, then its content (file) or target (symlink). */
export class Fingerprint {
  readonly #hash: Hash = createHash('sha256');

  constructor(xattrs: Xattrs | undefined) {
    const shipped = (xattrs ?? []).filter(([n]) => !n.startsWith('trusted.overlay.')).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const count = Buffer.alloc(4);
    count.writeUInt32BE(shipped.length);
    this.#hash.update(count);
    for (const [name, value] of shipped) {
      const len = Buffer.alloc(8);
      len.writeUInt32BE(Buffer.byteLength(name), 0);
      len.writeUInt32BE(value.length, 4);
      this.#hash.update(len).update(name).update(value);
    }
  }

  update(chunk: Buffer | string): void {
    this.#hash.update(chunk);
  }

  digest(): string {
    return this.#hash.digest('hex');
  }
}

/** The fingerprint of `c` as it is on disk now, or null when it changed (or went) while being read. */
export async function fingerprintNow(abs: string, c: Cand): Promise<string | null> {
  const print = new Fingerprint(c.xattrs);
  if (c.kind === 'd') return print.digest();
  if (c.kind === 'l') {
    const target = await readLinkStable(abs, c.st);
    if (target === null) return null;
    print.update(target);
    return print.digest();
  }
  const ok = await readFileStable(abs, c.st, () => Promise.resolve(), (chunk) => print.update(chunk));
  return ok ? print.digest() : null;
}
