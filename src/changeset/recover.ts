// Recovery of a commit left half staged (staging-txn.ts): run before anything is staged into an upper dir again and
// before its twin boots. A commit the caller had already recorded as staged was complete (applied and synced before
// it was recorded): its log is discarded (rolled forward). Any other is undone in reverse, so the upper dir is
// exactly as it was before that commit, which a later poll stages again.
import { lstat, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log/logger.js';
import { checkTarget, type StageTarget } from './stage-target.js';
import { currentBootId, discardTxn, isStrayTemp, readTxnHeader, txnDirName, undoTxn, type RecoveryOutcome } from './staging-txn.js';
import type { StageIntent } from './undo-log.js';

export async function recoverStaging(target: StageTarget, isRecorded: (intent: StageIntent) => boolean, log?: Logger): Promise<RecoveryOutcome> {
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
      const steps = await undoTxn(roots, dir);
      await discardTxn(dir);
      const rebooted = header.bootId !== (await currentBootId());
      outcome = { action: 'undone', intent: header.intent, steps, rebooted };
      log?.warn('a commit left half staged was undone; it is staged again by a later poll', { path: upper, steps, rebooted, ...(header.intent ?? {}) });
    }
  }
  for (const name of await readdir(tmp)) if (isStrayTemp(name)) await rm(join(tmp, name), { recursive: true, force: true });
  return outcome;
}

/** Discards a commit left half staged without undoing it: for a twin that runs, whose container owns its upper dir.
 *  Returns whether there was one. */
export async function abandonStaging(target: StageTarget): Promise<boolean> {
  const { tmp } = await checkTarget(target);
  const dir = join(tmp, txnDirName);
  const st = await lstat(dir).catch(() => null);
  if (st === null) return false;
  await discardTxn(dir);
  return true;
}
