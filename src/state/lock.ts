// One process per state dir: a pid lock file created exclusively. A lock whose pid is gone is taken over.
import { open, readFile, rm, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { TwinlayerError } from '../log/errors.js';

export class StateLockedError extends TwinlayerError {
  constructor(path: string, pid: number) {
    super('STATE_LOCKED', `another twinlayer process (pid ${pid}) holds the state dir lock`, { path, hint: 'run one puller (or pusher) per state dir' });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface StateLock { path: string; release(): Promise<void> }

export async function acquireStateLock(stateDir: string, name: string): Promise<StateLock> {
  await mkdir(stateDir, { recursive: true });
  const path = join(stateDir, `${name}.lock`);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fh = await open(path, 'wx', 0o600);
      await fh.writeFile(String(process.pid));
      await fh.close();
      return { path, release: () => rm(path, { force: true }) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number.parseInt((await readFile(path, 'utf8').catch(() => '')).trim(), 10);
      if (Number.isInteger(pid) && pid > 0 && alive(pid)) throw new StateLockedError(path, pid);
      await rm(path, { force: true });
    }
  }
  throw new TwinlayerError('STATE_LOCK_FAILED', 'could not take the state dir lock', { path });
}
