// Two commits large enough that a standby can be caught (killed, promoted) in the middle of applying the second:
// shared by the tests of atomic staging with real twins.
import { dir as tarDir, file as tarFile, tarOf, type Piece } from '../changeset/craft-tar.js';

const FILES = 2500;
const fname = (i: number): string => `f${String(i).padStart(5, '0')}`;

/** Commit 1 (full): FILES files in data/, some with xattrs and other owners. */
export function commit1(): Buffer {
  const pieces: Piece[] = [tarDir('data', { mode: 0o755 })];
  for (let i = 0; i < FILES; i++) {
    pieces.push(tarFile(`data/${fname(i)}`, `one ${i} `.repeat(40), { mode: 0o644, uid: i % 3 === 0 ? 1000 : 0, xattrs: i % 10 === 0 ? [['user.v', Buffer.from('1')]] : [] }));
  }
  return tarOf(pieces);
}

/** Commit 2 (delta): every file rewritten with another mode and owner, a new dir of as many files, whiteouts. */
export function commit2(): Buffer {
  const pieces: Piece[] = [tarDir('data', { mode: 0o750, uid: 33, xattrs: [['user.dir', Buffer.from('2')]] })];
  for (let i = 0; i < FILES; i++) {
    if (i % 50 === 7) pieces.push(tarFile(`data/.wh.${fname(i)}`, ''));
  }
  for (let i = 0; i < FILES; i++) {
    if (i % 50 === 7) continue;
    pieces.push(tarFile(`data/${fname(i)}`, `two ${i} `.repeat(60), { mode: 0o600, uid: 2000, xattrs: i % 10 === 1 ? [['user.v', Buffer.from('2')]] : [] }));
  }
  pieces.push(tarDir('more', { mode: 0o711 }));
  for (let i = 0; i < FILES; i++) pieces.push(tarFile(`more/${fname(i)}`, `more ${i}`));
  // The writer sorts by path bytes: `.wh.` names come before the files of data/.
  return tarOf(pieces);
}
