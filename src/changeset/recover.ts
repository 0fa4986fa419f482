// Recovery of a commit left half staged (staging-txn.ts): run before anything is staged into an upper dir again and
// before its twin boots. A commit the caller had already recorded as staged was complete (applied and synced before
// it was recorded): its log is discarded (rolled forward). Any other is undone in reverse, so the upper dir is
// exactly as it was before that commit, which a later poll stages again.
import { lstat, readdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Logger } from '../log/logger.js';
import { checkTarget, type StageTarget } from './stage-target.js';
import { lstatOrNull } from './upper-node.js';
import { currentBootId, discardTxn, isStrayTemp, readTxnHeader, txnDirName, undoTxn, type RecoveryOutcome } from './staging-txn.js';
import type { StageIntent } from './undo-log.js';

/** `beforeUndo` runs before a commit is undone, told whether the machine restarted since it began: a caller that must
 *  remember that (the upper dir is then untrusted) records it while the log still says so. */
export async function recoverStaging(
  target: StageTarget, isRecorded: (intent: StageIntent) => boolean, log?: Logger, beforeUndo?: (info: { rebooted: boolean }) => Promise<void>,
): Promise<RecoveryOutcome> {
  // No tmp dir: nothing was ever staged here, so nothing is half staged. Not created here: on a full disk (a fresh
  // twin on a standby out of space) its mkdir would fail and hold the twin for a commit that never began.
  if ((await lstatOrNull(resolve(target.tmpDir))) === null) return { action: 'none' };
  const { upper, tmp, roots } = await checkTarget(target);
  const dir = join(tmp, txnDirName);
  const st = await lstat(dir).catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  });
  let outcome: RecoveryOutcome = { action: 'none' };
  if (st !== null && !st.isDirectory()) {
    await rm(dir, { force: true });
  } else if (st !== null) {
    const header = await readTxnHeader(dir);
    if (header === null) {
      // The intent is synced before the first step: a missing or torn one means nothing was done.
      await discardTxn(dir);
    } else if (header.intent !== null && isRecorded(header.intent)) {
      await discardTxn(dir);
      outcome = { action: 'rolled-forward', intent: header.intent };
      log?.info('a commit interrupted after it was recorded as staged is complete; its undo log is discarded', { path: upper, ...header.intent });
    } else {
      const rebooted = header.bootId !== (await currentBootId());
      await beforeUndo?.({ rebooted });
      const steps = await undoTxn(roots, dir);
      await discardTxn(dir);
      outcome = { action: 'undone', intent: header.intent, steps, rebooted };
      log?.warn('a commit left half staged was undone; it is staged again by a later poll', { path: upper, steps, rebooted, ...(header.intent ?? {}) });
    }
  }
  await removeStrayTemps(tmp);
  return outcome;
}

/** Removes what older runs, validation's probe or a crashed gather left in the tmp dir: never seen by a twin. */
async function removeStrayTemps(tmp: string): Promise<void> {
  for (const name of await readdir(tmp)) if (isStrayTemp(name)) await rm(join(tmp, name), { recursive: true, force: true });
}

/** Discards a commit left half staged without undoing it: for a twin that runs, whose container owns its upper dir.
 *  Returns whether there was one. */
export async function abandonStaging(target: StageTarget): Promise<boolean> {
  if ((await lstatOrNull(resolve(target.tmpDir))) === null) return false;
  const { tmp } = await checkTarget(target);
  // Stray temps go too (the tmp dir is outside the container's view): a chunk dir a crash left holds files linked
  // into the running twin's upper dir, whose space would stay taken, and counts against the next commit's room.
  await removeStrayTemps(tmp);
  const dir = join(tmp, txnDirName);
  const st = await lstat(dir).catch(() => null);
  if (st === null) return false;
  await discardTxn(dir);
  return true;
}

/** Whether a commit left half staged may be there (its txn dir exists): one lstat, for a check right before a boot.
 *  Throws on anything but ENOENT (the caller cannot tell, so must not boot). */
export async function stagingLeftBehind(target: StageTarget): Promise<boolean> {
  try {
    await lstat(join(resolve(target.tmpDir), txnDirName));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
