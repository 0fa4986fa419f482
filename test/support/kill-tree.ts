// SIGKILL of a process together with every process it started, as systemd's control-group kill does. A staging
// process runs tools (setfattr, mknod, sync); killed alone, a tool it started runs on and may change an upper dir
// after recovery has begun (an intermittent "neither before nor after" in the atomic-staging test: a setfattr -x on
// the upper dir's root landed after the undo had restored the xattr).
import { killHard, withDescendants } from '../../src/lab/processes.js';

/** Freezes `pid` (it starts nothing more), then SIGKILLs it and all its descendants and waits until they are gone. */
export async function killTree(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGSTOP');
  } catch {
    return; // already gone
  }
  const left = await killHard(await withDescendants([pid]));
  if (left.length > 0) throw new Error(`pids ${left.join(' ')} survived SIGKILL`);
}
