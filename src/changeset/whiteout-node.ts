// Overlayfs whiteouts are character devices 0/0. Node cannot mknod, so coreutils' mknod makes one template per
// staging run; further whiteouts are hard links of it (the kernel shares one whiteout inode the same way).
import type { BigIntStats, Stats } from 'node:fs';
import { runToolOk } from './tools.js';

export function isWhiteoutStat(st: Stats | BigIntStats): boolean {
  return st.isCharacterDevice() && (typeof st.rdev === 'bigint' ? st.rdev === 0n : st.rdev === 0);
}

export async function makeWhiteoutNode(path: string): Promise<void> {
  await runToolOk('mknod', ['-m', '000', path, 'c', '0', '0'], path);
}
