// The state-dir lock is flock(2): held while the holder lives, released by the kernel when it dies (SIGKILL too),
// and never fooled by whatever pid the lock file names.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';

import { TwinlayerError } from '../../../src/log/errors.js';
import { acquireStateLock, StateLockedError } from '../../../src/state/lock.js';
import { repoRoot } from '../../support/twinlayer.js';

const holderScript = join(repoRoot, 'test', 'integration', 'state', 'lock-holder.ts');

function isLocked(path: string, pid: number | null) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof StateLockedError, String(err));
    assert.equal(err.code, 'STATE_LOCKED');
    assert.equal(err.context.path, path);
    assert.match(err.message, /another twinlayer process \(pid \S+\) holds the state dir lock/);
    if (pid !== null) assert.ok(err.message.includes(`(pid ${pid})`), err.message);
    return true;
  };
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Spawns lock-holder.ts and waits (bounded) for its first line: `locked <pid>` or `failed <code>`. */
async function startHolder(stateDir: string, name: string, children: ChildProcess[]): Promise<{ child: ChildProcess; line: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', holderScript, stateDir, name], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  let err = '';
  child.stderr?.on('data', (b: Buffer) => (err += b.toString('utf8')));
  const line = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`lock holder said nothing within 20 s; stderr: ${err}`)), 20_000);
    child.stdout?.on('data', (b: Buffer) => {
      out += b.toString('utf8');
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(t);
        resolve(out.slice(0, nl));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`lock holder exited (${code}) before saying anything; stderr: ${err}`));
    });
  });
  return { child, line };
}

describe('state dir lock', () => {
  let root: string;
  let n = 0;
  const children: ChildProcess[] = [];
  const dir = (): string => join(root, `s${++n}`);

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'twinlayer-lock-'));
  });
  afterEach(async () => {
    for (const c of children.splice(0)) {
      c.kill('SIGKILL');
      await exited(c);
    }
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('refuses a second acquire in the same process while the first is held, and grants it after release', async () => {
    const stateDir = dir();
    const first = await acquireStateLock(stateDir, 'puller-g');
    assert.equal(first.path, join(stateDir, 'puller-g.lock'));
    assert.equal((await readFile(first.path, 'utf8')).trim(), String(process.pid));
    await assert.rejects(acquireStateLock(stateDir, 'puller-g'), isLocked(first.path, process.pid));
    // Another name in the same dir is another lock.
    const other = await acquireStateLock(stateDir, 'puller-h');
    await other.release();
    await first.release();
    await first.release(); // twice is harmless
    const second = await acquireStateLock(stateDir, 'puller-g');
    await assert.rejects(acquireStateLock(stateDir, 'puller-g'), isLocked(first.path, process.pid));
    await second.release();
  });

  it('is not blocked by a lock file naming a live unrelated pid (a pid reused after a power loss)', async () => {
    const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
    children.push(sleeper);
    const sleeperPid = sleeper.pid;
    assert.ok(sleeperPid !== undefined);
    for (const pid of [sleeperPid, 1]) {
      const stateDir = dir();
      const path = join(stateDir, 'puller-g.lock');
      await acquireStateLock(stateDir, 'puller-g').then((l) => l.release());
      await writeFile(path, `${pid}\n`);
      process.kill(pid, 0); // alive: the old pid test would have refused
      const lock = await acquireStateLock(stateDir, 'puller-g');
      assert.equal((await readFile(path, 'utf8')).trim(), String(process.pid), 'the file now names the real holder');
      await lock.release();
    }
  });

  it('is held by another process while it lives and released by the kernel when it is SIGKILLed', async () => {
    const stateDir = dir();
    const path = join(stateDir, 'puller-g.lock');
    const { child, line } = await startHolder(stateDir, 'puller-g', children);
    assert.equal(line, `locked ${child.pid}`);
    await assert.rejects(acquireStateLock(stateDir, 'puller-g'), isLocked(path, child.pid ?? null));
    // And a third process is refused as well.
    const third = await startHolder(stateDir, 'puller-g', children);
    assert.equal(third.line, 'failed STATE_LOCKED');
    child.kill('SIGKILL');
    await exited(child);
    // The file still names the dead holder; that does not matter.
    assert.equal((await readFile(path, 'utf8')).trim(), String(child.pid));
    const lock = await acquireStateLock(stateDir, 'puller-g');
    const again = await startHolder(stateDir, 'puller-g', children);
    assert.equal(again.line, 'failed STATE_LOCKED');
    await lock.release();
  });

  it('names util-linux when flock(1) is missing, and leaves the lock free', async () => {
    const stateDir = dir();
    await assert.rejects(acquireStateLock(stateDir, 'puller-g', { flockBin: join(root, 'no-such-flock') }), (err: unknown) => {
      assert.ok(err instanceof TwinlayerError);
      assert.equal(err.code, 'FLOCK_MISSING');
      assert.match(err.message, /util-linux/);
      assert.ok(err.message.includes(join(stateDir, 'puller-g.lock')), err.message);
      return true;
    });
    const lock = await acquireStateLock(stateDir, 'puller-g');
    await lock.release();
  });
});
