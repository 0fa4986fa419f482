// One process per state dir, enforced by flock(2) on `<stateDir>/<name>.lock`. The kernel holds the lock for the
// open file description and drops it when the holder closes it or dies (SIGKILL and power loss included), so a
// stale lock file, or a pid in it reused by another process after a reboot, never blocks anybody. The pid in the
// file is information for the operator, never the test of who holds the lock.
//
// Node has no flock binding: util-linux's flock(1) locks a descriptor it inherits as fd 3. That descriptor shares
// our open file description, so the lock stays ours after the child exits, for as long as our FileHandle is open.
import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { mkdir, open, readFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { TwinlayerError } from '../log/errors.js';

export class StateLockedError extends TwinlayerError {
  /** `pid` is what the holder wrote into the lock file (null when unreadable); informational only. */
  constructor(path: string, pid: number | null) {
    super('STATE_LOCKED', `another twinlayer process (pid ${pid ?? 'unknown'}) holds the state dir lock`, {
      path,
      pid,
      hint: 'run one puller (or pusher) per state dir',
    });
  }
}

export interface StateLock { path: string; release(): Promise<void> }

export interface StateLockOptions {
  /** The flock(1) binary of util-linux; default /usr/bin/flock. */
  flockBin?: string;
}

/** flock(1)'s exit status when the lock is held elsewhere; distinct from its own error statuses (1, 64-75). */
const CONFLICT_EXIT = 100;
/** flock --nonblock answers at once; this only bounds a child that never does. */
const FLOCK_TIMEOUT_MS = 10_000;

/** Takes the lock or throws StateLockedError (code STATE_LOCKED) at once; never waits for the holder. */
export async function acquireStateLock(stateDir: string, name: string, opts: StateLockOptions = {}): Promise<StateLock> {
  await mkdir(stateDir, { recursive: true });
  const path = join(stateDir, `${name}.lock`);
  // Not truncated on open: until the lock is ours, the file holds the holder's pid.
  const fh = await open(path, constants.O_RDWR | constants.O_CREAT, 0o600);
  try {
    await flockNonblocking(fh, path, opts.flockBin ?? '/usr/bin/flock');
    await fh.truncate(0);
    await fh.write(`${process.pid}\n`, 0);
  } catch (err) {
    await fh.close();
    throw err;
  }
  let released: Promise<void> | null = null;
  // The file stays: after an unlink, a process that had opened the old inode and a newcomer that creates a new
  // one could both take "the" lock.
  return { path, release: () => (released ??= fh.close()) };
}

async function flockNonblocking(fh: FileHandle, path: string, bin: string): Promise<void> {
  const child = spawn(bin, ['--nonblock', '--exclusive', '--conflict-exit-code', String(CONFLICT_EXIT), '3'], {
    stdio: ['ignore', 'ignore', 'pipe', fh.fd],
  });
  // Not spawn's `timeout` option: its timer outlives a child that failed to spawn and holds the event loop.
  const timer = setTimeout(() => child.kill('SIGKILL'), FLOCK_TIMEOUT_MS);
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (s: string) => {
    if (stderr.length < 4096) stderr += s;
  });
  const outcome = await new Promise<{ code: number | null; signal: NodeJS.Signals | null } | { error: NodeJS.ErrnoException }>((resolve) => {
    child.once('error', (error: NodeJS.ErrnoException) => resolve({ error }));
    child.once('close', (code, signal) => resolve({ code, signal }));
  }).finally(() => clearTimeout(timer));
  if ('error' in outcome) {
    if (outcome.error.code === 'ENOENT' || outcome.error.code === 'EACCES') {
      throw new TwinlayerError('FLOCK_MISSING', `cannot run ${bin} to lock the state dir`, { path, hint: 'install util-linux (it provides flock)' }, { cause: outcome.error });
    }
    throw new TwinlayerError('STATE_LOCK_FAILED', `cannot run ${bin} to lock the state dir`, { path }, { cause: outcome.error });
  }
  if (outcome.code === 0) return;
  if (outcome.code === CONFLICT_EXIT) throw new StateLockedError(path, await holderPid(path));
  const how = outcome.code === null ? `was killed by ${outcome.signal ?? 'a signal'}` : `exited with status ${outcome.code}`;
  throw new TwinlayerError('STATE_LOCK_FAILED', `${bin} ${how}${stderr.trim() ? `: ${stderr.trim()}` : ''}`, { path });
}

async function holderPid(path: string): Promise<number | null> {
  const text = await readFile(path, 'utf8').catch(() => '');
  const pid = Number.parseInt(text.trim(), 10);
  return Number.isInteger(pid) && pid > 0 ? pid : null;
}
