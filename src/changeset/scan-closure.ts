// Completes one scan's candidate set until it is closed: hard-link siblings ship together, ancestors of what ships
// are compared, xattrs are read for what may ship, racily clean nodes have their content checked, and a dir that
// carries its opaque marker ships its whole subtree.
import { ancestorsOf, relPathIsExcluded } from './paths.js';
import { fingerprintNow, isRacy } from './racy.js';
import { needsContentCheck, needsXattrs } from './shipped-compare.js';
import { lstatOrNull } from './upper-node.js';
import type { Scan } from './upper-scan.js';
import { readXattrs } from './xattr.js';

const opaqueXattr = 'trusted.overlay.opaque';
/** Each round adds something or ends the loop; a tree cannot need more rounds than this. */
const maxRounds = 10_000;

export async function completeScan(scan: Scan, full: boolean): Promise<void> {
  for (let round = 0; round < maxRounds; round++) {
    let grew = await recheckNamedSiblings(scan);
    grew = (await addHardLinkSiblings(scan)) || grew;
    grew = (await addAncestors(scan)) || grew;
    await readCandXattrs(scan);
    grew = (await checkRacilyClean(scan)) || grew;
    grew = (await walkOpaqueSubtrees(scan, full)) || grew;
    if (!grew) return;
  }
}

/** Siblings of changed or vanished hard links, named by no event. */
async function recheckNamedSiblings(scan: Scan): Promise<boolean> {
  let grew = false;
  for (const p of [...scan.recheck]) {
    scan.recheck.delete(p);
    if (scan.cands.has(p) || scan.vanished.has(p) || scan.covered(p)) continue;
    if (ancestorsOf(p).some((a) => scan.vanished.has(a))) continue;
    await scan.visit(p, false);
    grew = true;
  }
  return grew;
}

/** Hard-link siblings of shipped files ship together (the staging side links them to the first one). */
async function addHardLinkSiblings(scan: Scan): Promise<boolean> {
  let grew = false;
  for (const c of scan.shipping()) {
    if (c.kind !== 'f' || c.st.nlink <= 1n) continue;
    const known = new Set([...scan.shippedWithIno(Number(c.st.ino))]);
    for (const other of scan.cands.values()) if (other.kind === 'f' && other.st.ino === c.st.ino) known.add(other.path);
    for (const p of known) {
      const existing = scan.cands.get(p);
      if (existing !== undefined) {
        if (existing.st.ino === c.st.ino && !existing.forced && existing.kind === 'f') {
          existing.forced = true;
          grew = true;
        }
        continue;
      }
      if (relPathIsExcluded(p, scan.excludes)) continue;
      const st = await lstatOrNull(scan.abs(p));
      if (st !== null && st.isFile() && st.ino === c.st.ino && st.dev === c.st.dev) {
        scan.cands.set(p, { path: p, st, kind: 'f', forced: true, opaque: false });
        grew = true;
      }
    }
  }
  return grew;
}

/** Ancestors of shipped entries ship with them, changed or not (a new one is walked whole), as the layer diffs of
 *  Docker do: an OCI applier creates a parent a layer lacks as 0755 root:root, which in an image made of the
 *  changesets would hide the real dir of a lower layer. Staging a dir entry onto the dir it already is only sets its
 *  metadata again (no marker, so no prune). Ancestors of paths an event named are compared only. */
async function addAncestors(scan: Scan): Promise<boolean> {
  let grew = false;
  const needParents = [
    ...scan.shipping().map((c) => ({ path: c.path, hint: false })),
    ...[...scan.vanished].map((v) => ({ path: v, hint: false })),
    ...[...scan.dirtyParents].map((v) => ({ path: v, hint: true })),
  ];
  scan.dirtyParents.clear();
  for (const c of needParents) {
    for (const a of ancestorsOf(c.path)) {
      const known = scan.cands.get(a);
      if (known !== undefined) {
        if (!c.hint && known.kind === 'd' && !known.forced) {
          known.forced = true;
          grew = true;
        }
        continue;
      }
      const st = await lstatOrNull(scan.abs(a));
      if (st === null || !st.isDirectory()) {
        if (c.hint) break;
        // Raced with a removal: leave this path for the next build.
        scan.torn.push(c.path);
        scan.cands.delete(c.path);
        scan.vanished.delete(c.path);
        break;
      }
      if (scan.isNewDir(a, st)) {
        await scan.walk(a, true);
        scan.newDirs.add(a);
      } else {
        scan.cands.set(a, { path: a, st, kind: 'd', forced: !c.hint, opaque: false });
      }
      grew = true;
    }
  }
  return grew;
}

/** Xattrs of everything that may ship (dirs need them to know whether they are opaque). */
async function readCandXattrs(scan: Scan): Promise<void> {
  const need = [...scan.cands.values()].filter((c) => c.kind !== 'w' && c.xattrs === undefined && (c.forced || needsXattrs(scan.index, c)));
  if (need.length > 0) {
    const got = await readXattrs(need.map((c) => scan.abs(c.path)));
    for (const c of need) {
      c.xattrs = got.get(scan.abs(c.path)) ?? [];
      c.opaque = !scan.plain && c.kind === 'd' && c.xattrs.some(([n, v]) => n === opaqueXattr && v.toString('latin1') === 'y');
    }
  }
  for (const c of scan.cands.values()) {
    if (c.kind === 'd' && c.xattrs === undefined) c.opaque = scan.index.get(c.path)?.o === true;
  }
}

/** Nodes shipped within a tick of their last change whose stat still matches: the fingerprint decides. One whose
 *  timestamps are now older than the window, unchanged, is trusted by stat again (scan.settled). */
async function checkRacilyClean(scan: Scan): Promise<boolean> {
  let grew = false;
  for (const c of [...scan.cands.values()]) {
    if (!needsContentCheck(scan.index, c)) continue;
    const now = await fingerprintNow(scan.abs(c.path), c);
    c.racy = now !== null && now === scan.index.get(c.path)?.h ? 'same' : 'changed';
    if (c.racy === 'changed') grew = true;
    else if (!isRacy(c.st, scan.startNs)) scan.settled.add(c.path);
  }
  return grew;
}

/** A dir that is (newly, or replaced while) opaque ships its marker, so it must ship its whole subtree. */
async function walkOpaqueSubtrees(scan: Scan, full: boolean): Promise<boolean> {
  let grew = false;
  for (const c of [...scan.cands.values()]) {
    if (c.kind !== 'd' || !c.opaque || scan.covered(c.path)) continue;
    const old = scan.index.get(c.path);
    if (full || scan.isNewDir(c.path, c.st) || old?.o !== true) {
      await scan.walk(c.path, true);
      grew = true;
    }
  }
  return grew;
}
