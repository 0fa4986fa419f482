// Atomic staging (issue 8 item 2): a process staging a commit into a twin's upper dir is killed with SIGKILL at
// random moments of the apply — while a full commit prunes, while whiteouts remove dirs and files, while opaque dirs
// drop stale children, while existing dirs get new owners, modes and xattrs — and recovery then leaves the upper
// dir, file by file (type, content, mode, owner, mtime, xattrs, hard links, presence), exactly as before the commit
// or exactly as after it, never a mix; staging the commit again converges. A failure midway (EPERM) and an abort
// midway (the finalize deadline) are undone at once. The merged overlayfs view of the result hides what the commit
// whited out. Root only (mknod, chown, chattr, trusted.* xattrs, overlay mounts).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { recoverStaging, stageChangeset, type RecoveryOutcome, type StageIntent } from '../../../src/changeset/index.js';
import { comparePaths } from '../../../src/changeset/paths.js';
import { killTree } from '../../support/kill-tree.js';
import { makeOverlayDirs, mountOverlay, requireRoot, unmountQuietly, type OverlayDirs } from '../../support/overlay.js';
import { diffStates, upperState, type UpperState } from '../../support/upper-state.js';
import { dir, entry, file, hardlinkEntry, symlinkEntry, tarOf, writeGz, type Piece } from './craft-tar.js';

const run = promisify(execFile);
const KILLS = 24;
const child = new URL('./stage-child.ts', import.meta.url).pathname;

/** A small seeded PRNG (mulberry32): the kill points of a failing run can be replayed with TWINLAYER_TEST_SEED. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const body = (seed: string, size: number): Buffer => {
  const out = Buffer.alloc(size);
  let block = createHash('sha256').update(seed).digest();
  for (let off = 0; off < size; off += block.length) {
    block.copy(out, off);
    block = createHash('sha256').update(block).digest();
  }
  return out;
};
const dirNames = ['d0', 'd1', 'd2', 'd3', 'd4', 'd5'];
const fname = (i: number): string => `f${String(i).padStart(3, '0')}`;
const userTag = (v: string): Array<[string, Buffer]> => [['user.tag', Buffer.from(v)]];

/** The writer sorts entries by path bytes; so do these changesets. */
function sorted(pieces: Array<[string, Piece]>): Piece[] {
  return pieces.sort((a, b) => comparePaths(a[0], b[0])).map(([, p]) => p);
}

/** State A: dirs of files with varied modes, owners and xattrs, a dir to white out, a dir to make opaque, links,
 *  a file and a dir that change type. */
function commitA(): Piece[] {
  const p: Array<[string, Piece]> = [];
  for (const [k, d] of dirNames.entries()) {
    p.push([d, dir(d, { mode: 0o755, xattrs: k % 2 === 0 ? userTag(`dir-${d}`) : [] })]);
    for (let i = 0; i < 60; i++) {
      const path = `${d}/${fname(i)}`;
      p.push([path, file(path, body(`A ${path}`, 512 + ((i * 97) % 3000)), { mode: i % 7 === 0 ? 0o4755 : 0o644, uid: i % 3 === 0 ? 1000 : 0, gid: i % 5 === 0 ? 1000 : 0, xattrs: i % 4 === 0 ? userTag(`A-${i}`) : [] })]);
    }
  }
  p.push(['meta', dir('meta', { mode: 0o750, uid: 1000, gid: 1000, xattrs: [['user.dirtag', Buffer.from('a')], ['user.old', Buffer.from('1')]] })]);
  p.push(['meta/inner', file('meta/inner', 'inner A')]);
  p.push(['opq', dir('opq')]);
  for (let i = 0; i < 40; i++) p.push([`opq/${fname(i)}`, file(`opq/${fname(i)}`, body(`opq ${i}`, 700))]);
  p.push(['gone', dir('gone')]);
  p.push(['gone/sub', dir('gone/sub', { mode: 0o700 })]);
  for (let i = 0; i < 40; i++) p.push([`gone/sub/${fname(i)}`, file(`gone/sub/${fname(i)}`, body(`gone ${i}`, 900))]);
  p.push(['links', dir('links')]);
  p.push(['links/s1', symlinkEntry('links/s1', '../d0/f000')]);
  p.push(['links/h1', hardlinkEntry('links/h1', 'd0/f001')]);
  p.push(['rep', dir('rep')]);
  p.push(['rep/was-file', file('rep/was-file', 'a file in A')]);
  p.push(['rep/was-dir', dir('rep/was-dir')]);
  p.push(['rep/was-dir/child', file('rep/was-dir/child', 'child in A')]);
  return sorted(p);
}

/** A delta over A touching every kind of step. */
function commitB(): Piece[] {
  const p: Array<[string, Piece]> = [];
  for (const d of dirNames) p.push([d, dir(d, { mode: 0o755, mtimeNs: 1_710_000_000_000_000_000n })]);
  // Rewrites: new content, mode, owner, xattrs.
  for (const d of ['d0', 'd1', 'd2']) {
    for (let i = 0; i < 60; i++) {
      const path = `${d}/${fname(i)}`;
      p.push([path, file(path, body(`B ${path}`, 300 + ((i * 131) % 4000)), { mode: 0o600, uid: 2000, gid: 2000, xattrs: i % 3 === 0 ? userTag(`B-${i}`) : [] })]);
    }
  }
  // File whiteouts, and a whiteout of a dir with content, and of a path only the lower dir has.
  for (let i = 0; i < 30; i++) p.push([`d3/.wh.${fname(i)}`, file(`d3/.wh.${fname(i)}`, '')]);
  p.push(['.wh.gone', file('.wh.gone', '')]);
  p.push(['.wh.gone-lower.txt', file('.wh.gone-lower.txt', '')]);
  // An existing dir changes owner, mode and xattrs in place.
  p.push(['meta', dir('meta', { mode: 0o700, uid: 0, gid: 0, xattrs: [['user.dirtag', Buffer.from('b')], ['user.new', Buffer.from('2')]] })]);
  p.push(['new', dir('new', { mode: 0o711, uid: 33, gid: 33 })]);
  for (let i = 0; i < 100; i++) p.push([`new/${fname(i)}`, file(`new/${fname(i)}`, body(`new ${i}`, 1000 + i))]);
  // Opaque: stale children pruned, one new one.
  p.push(['opq', dir('opq', { mode: 0o775 })]);
  p.push(['opq/.wh..wh..opq', file('opq/.wh..wh..opq', '')]);
  p.push(['opq/fresh', file('opq/fresh', 'fresh in B')]);
  p.push(['links/h2', hardlinkEntry('links/h2', 'd4/f005')]);
  p.push(['links/s1', file('links/s1', 'no longer a link')]);
  p.push(['rep/was-file', dir('rep/was-file', { mode: 0o700 })]);
  p.push(['rep/was-dir', file('rep/was-dir', 'a file in B')]);
  p.push(['top-new', entry({ path: 'top-new', type: 'symlink', mode: 0o777, linkpath: '/etc/hostname' })]);
  return sorted(p);
}

/** A full commit over A: prunes most files one by one (their dirs stay), and whole subtrees. */
function commitC(): Piece[] {
  const p: Array<[string, Piece]> = [];
  for (const [k, d] of dirNames.entries()) {
    p.push([d, dir(d, { mode: 0o755, xattrs: k % 2 === 0 ? userTag(`dir-${d}`) : [] })]);
    const keep = d === 'd0' ? 60 : 6;
    for (let i = 0; i < keep; i++) {
      const path = `${d}/${fname(i)}`;
      const same = i % 2 === 0;
      p.push([path, file(path, body(`${same ? 'A' : 'C'} ${path}`, 512 + ((i * 97) % 3000)), { mode: i % 7 === 0 ? 0o4755 : 0o644, uid: i % 3 === 0 ? 1000 : 0, gid: i % 5 === 0 ? 1000 : 0, xattrs: i % 4 === 0 ? userTag(`A-${i}`) : [] })]);
    }
  }
  p.push(['meta', dir('meta', { mode: 0o750, uid: 1000, gid: 1000, xattrs: [['user.dirtag', Buffer.from('c')]] })]);
  p.push(['keep', dir('keep')]);
  for (let i = 0; i < 20; i++) p.push([`keep/${fname(i)}`, file(`keep/${fname(i)}`, body(`keep ${i}`, 2000))]);
  return sorted(p);
}

interface Scenario { name: string; kind: 'full' | 'delta'; blob: string; after: UpperState; logBytes: number }

describe('atomic staging under kill -9', { timeout: 900_000 }, () => {
  let base = '';
  let ov: OverlayDirs;
  let tmpDir = '';
  let pristine = '';
  let beforeState: UpperState;
  const recorded = (): string => join(base, 'recorded.json');
  const seed = Number(process.env['TWINLAYER_TEST_SEED'] ?? Math.floor(Math.random() * 2 ** 31));
  const random = prng(seed);

  /** The twin's upper dir back to state A (a copy with owners, modes, times, xattrs, devices and hard links). */
  async function resetUpper(): Promise<void> {
    await rm(ov.upper, { recursive: true, force: true });
    await run('cp', ['-a', pristine, ov.upper]);
    await rm(recorded(), { force: true });
  }

  const intentOf = (s: Scenario): StageIntent => ({ container: 'web', twinId: 'twin-1', generation: 1, seq: s.kind === 'full' ? 3 : 2, digest: s.name });

  const isRecorded = async (s: Scenario): Promise<boolean> => {
    const text = await readFile(recorded(), 'utf8').catch(() => null);
    return text !== null && JSON.stringify(JSON.parse(text)) === JSON.stringify(intentOf(s));
  };

  /** Starts the staging process; kills it with SIGKILL `thenWaitMs` after its undo log holds `killAtLogBytes` bytes
   *  (Infinity: once the apply is over and the log gone). Resolves with its exit, and the largest size the log reached. Progress,
   *  not time, picks the moment: the kills land inside the apply however fast the machine is. */
  function stageInChild(s: Scenario, killAtLogBytes: number | null, thenWaitMs = 0): Promise<{ signal: string | null; code: number | null; maxLogBytes: number; killedInApply: boolean }> {
    return new Promise((resolve, reject) => {
      const p = spawn(process.execPath, ['--import', 'tsx', child, s.blob, s.kind, ov.upper, tmpDir, recorded(), JSON.stringify(intentOf(s))], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      p.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
      p.stdout.resume();
      let seen = false;
      let maxLogBytes = 0;
      let killedInApply = false;
      let exited = false;
      const log = join(tmpDir, 'txn', 'undo.log');
      const watch = async (): Promise<void> => {
        const deadline = Date.now() + 120_000;
        while (!exited && Date.now() < deadline) {
          const size = await lstat(log).then((st) => st.size, () => null);
          if (size !== null) {
            seen = true;
            maxLogBytes = Math.max(maxLogBytes, size);
          }
          const due = killAtLogBytes !== null && (size !== null ? size >= killAtLogBytes : seen && killAtLogBytes === Infinity);
          if (due) {
            if (thenWaitMs > 0) await new Promise((r) => setTimeout(r, thenWaitMs));
            killedInApply = await lstat(log).then(() => true, () => false);
            // With the tools it started: one left running could change the upper dir after recovery began.
            if (p.pid !== undefined) await killTree(p.pid);
            return;
          }
          await new Promise((r) => setTimeout(r, 1));
        }
      };
      const watching = watch();
      p.on('error', reject);
      p.on('exit', (code, signal) => {
        exited = true;
        void watching.then(() => {
          if (signal === null && code !== 0) reject(new Error(`staging process failed (${code}): ${stderr}`));
          else resolve({ signal, code, maxLogBytes, killedInApply });
        });
      });
    });
  }

  before(async () => {
    requireRoot();
    base = await mkdtemp('/tmp/twinlayer-atomic-');
    const lower = join(base, 'lower');
    await mkdir(join(lower, 'opq'), { recursive: true });
    await writeFile(join(lower, 'gone-lower.txt'), 'only in the lower dir');
    await writeFile(join(lower, 'opq', 'lower-child'), 'hidden once opq is opaque');
    await writeFile(join(lower, 'keep.txt'), 'stays visible');
    ov = await makeOverlayDirs(base, 'twin', lower);
    tmpDir = join(base, 'twin', 'twinlayer-tmp');
    await stageChangeset(await writeGz(join(base, 'a.tar.gz'), tarOf(commitA())), 'full', { upperDir: ov.upper, tmpDir });
    pristine = join(base, 'pristine');
    await run('cp', ['-a', ov.upper, pristine]);
    beforeState = await upperState(ov.upper);
    await resetUpper();
    assert.deepEqual(diffStates(await upperState(ov.upper), beforeState, 0n), [], 'cp -a reproduces state A exactly');
  });

  after(async () => {
    if (ov) await unmountQuietly(ov);
    if (base !== '') await rm(base, { recursive: true, force: true });
  });

  async function scenario(name: string, kind: 'full' | 'delta', pieces: Piece[]): Promise<Scenario> {
    const blob = await writeGz(join(base, `${name}.tar.gz`), tarOf(pieces));
    const s: Scenario = { name, kind, blob, after: beforeState, logBytes: 0 };
    await resetUpper();
    const clean = await stageInChild(s, null);
    assert.equal(clean.code, 0);
    assert.ok(clean.maxLogBytes > 0, 'the undo log was seen');
    s.after = await upperState(ov.upper);
    s.logBytes = clean.maxLogBytes;
    assert.ok(diffStates(beforeState, s.after, null).length > 0, 'the commit changes the upper dir');
    return s;
  }

  async function killRepeatedly(s: Scenario): Promise<void> {
    const tally: Record<string, number> = { before: 0, after: 0 };
    const outcomes: string[] = [];
    let midApply = 0;
    for (let k = 0; k < KILLS; k++) {
      await resetUpper();
      // Mostly inside the apply, at a random point of its log; a quarter once the log is complete (xattrs of existing
      // dirs and dir mtimes being set, the sync, the record); a few after it (the discard).
      const f = random();
      const at = f < 0.65 ? Math.ceil((f / 0.65) * s.logBytes) : f < 0.9 ? s.logBytes : Infinity;
      const wait = f >= 0.65 && f < 0.9 ? Math.floor(random() * 60) : 0;
      const r = await stageInChild(s, at, wait);
      // What the puller's applied state would say: recorded once the commit was applied, synced and recorded.
      const rec = await isRecorded(s);
      const outcome: RecoveryOutcome = await recoverStaging({ upperDir: ov.upper, tmpDir }, (i) => rec && JSON.stringify(i) === JSON.stringify(intentOf(s))).catch((err: unknown) => {
        throw new Error(`recovery failed after a kill at ${at} bytes of undo log (seed ${seed}): ${(err as Error).message}`);
      });
      const now = await upperState(ov.upper);
      const asBefore = diffStates(beforeState, now, 2000n);
      const asAfter = diffStates(s.after, now, null);
      const where = `kill ${k} ${wait} ms after ${at} of ${s.logBytes} bytes of undo log (seed ${seed}, outcome ${JSON.stringify(outcome)}, recorded ${rec})`;
      if (asBefore.length === 0) tally['before']!++;
      else if (asAfter.length === 0) tally['after']!++;
      else assert.fail(`${where}: the upper dir is neither the state before nor the state after the commit.\nvs before: ${asBefore.join('\n')}\nvs after: ${asAfter.join('\n')}`);
      // Recorded means the twin holds the whole commit; not recorded means exactly the state before it.
      if (rec) assert.equal(asAfter.length, 0, `${where}: recorded, so whole`);
      else assert.equal(asBefore.length, 0, `${where}: not recorded, so as before`);
      if (outcome.action === 'undone' && outcome.steps > 0 && r.killedInApply) midApply++;
      assert.deepEqual(await readdir(tmpDir), [], `${where}: nothing left in the tmp dir`);
      outcomes.push(`${outcome.action}${outcome.action === 'undone' ? `:${outcome.steps}` : ''}`);
      // The twin converges: the commit is staged again (a later poll).
      await stageChangeset(s.blob, s.kind, { upperDir: ov.upper, tmpDir });
      assert.deepEqual(diffStates(s.after, await upperState(ov.upper), null), [], `${where}: staging again converges`);
    }
    console.log(`# ${s.name}: ${KILLS} kills (seed ${seed}, undo log ${s.logBytes} bytes): ${tally['before']} as before, ${tally['after']} as after, ${midApply} undone midway; ${outcomes.join(' ')}`);
    assert.ok(midApply >= KILLS / 3, `at least a third of the kills landed inside the apply and were undone (${midApply})`);
  }

  it('a delta (rewrites, whiteouts, opaque dirs, dir metadata, links, type changes) is whole or absent after any kill', async () => {
    await killRepeatedly(await scenario('delta-b', 'delta', commitB()));
  });

  it('a full commit that prunes file by file and whole subtrees is whole or absent after any kill', async () => {
    await killRepeatedly(await scenario('full-c', 'full', commitC()));
  });

  it('a kill after the commit was recorded rolls forward: the log goes, the commit stays', async () => {
    const s = await scenario('delta-b2', 'delta', commitB());
    await resetUpper();
    // Stage in process and stop right after the record, as kill -9 would: the log is still there.
    await assert.rejects(stageChangeset(s.blob, s.kind, { upperDir: ov.upper, tmpDir }, {
      intent: intentOf(s),
      record: async () => {
        await writeFile(recorded(), JSON.stringify(intentOf(s)));
        throw new Error('killed right after the record');
      },
    }), /killed right after the record/);
    assert.ok((await readdir(tmpDir)).includes('txn'), 'the undo log stays when the record did not return');
    const outcome = await recoverStaging({ upperDir: ov.upper, tmpDir }, (i) => JSON.stringify(i) === JSON.stringify(intentOf(s)));
    assert.equal(outcome.action, 'rolled-forward');
    assert.deepEqual(diffStates(s.after, await upperState(ov.upper), null), []);
    assert.deepEqual(await readdir(tmpDir), []);
  });

  it('a failure midway (an entry the kernel will not replace) is undone at once: exactly the state before', async () => {
    await resetUpper();
    // Immutable: renaming it away fails with EPERM, late in the delta (d2 sorts after d0, d1 and the whiteouts).
    const stuck = join(ov.upper, 'd2', fname(59));
    await run('chattr', ['+i', stuck]);
    try {
      const was = await upperState(ov.upper);
      await assert.rejects(stageChangeset(await writeGz(join(base, 'eperm-b.tar.gz'), tarOf(commitB())), 'delta', { upperDir: ov.upper, tmpDir }), { code: 'EPERM' });
      assert.deepEqual(diffStates(was, await upperState(ov.upper), 2000n), [], 'undone');
      assert.deepEqual(await readdir(tmpDir), []);
    } finally {
      await run('chattr', ['-i', stuck]);
    }
  });

  it('an abort midway (the finalize deadline) is undone at once: exactly the state before', async () => {
    await resetUpper();
    const was = await upperState(ov.upper);
    const controller = new AbortController();
    const log = join(tmpDir, 'txn', 'undo.log');
    // Aborted once the apply is well under way (its undo log past 4 KiB), from the same process as a deadline is.
    const timer = setInterval(() => {
      void lstat(log).then((st) => {
        if (st.size > 4096) controller.abort(new Error('finalize deadline'));
      }, () => undefined);
    }, 1);
    try {
      await assert.rejects(stageChangeset(await writeGz(join(base, 'abort-b.tar.gz'), tarOf(commitB())), 'delta', { upperDir: ov.upper, tmpDir }, { signal: controller.signal }), /finalize deadline/);
    } finally {
      clearInterval(timer);
    }
    assert.ok(controller.signal.aborted);
    assert.deepEqual(diffStates(was, await upperState(ov.upper), 2000n), [], 'undone');
    assert.deepEqual(await readdir(tmpDir), []);
  });

  it('the merged overlayfs view of the staged delta hides what it whited out', async () => {
    await resetUpper();
    await stageChangeset(await writeGz(join(base, 'merged-b.tar.gz'), tarOf(commitB())), 'delta', { upperDir: ov.upper, tmpDir });
    await rm(ov.work, { recursive: true, force: true });
    await mkdir(ov.work);
    await mountOverlay(ov);
    try {
      const names = async (rel: string): Promise<string[]> => (await readdir(join(ov.merged, rel))).sort();
      assert.ok(!(await names('')).includes('gone') && !(await names('')).includes('gone-lower.txt'), 'whited out');
      assert.ok((await names('')).includes('keep.txt'), 'the lower dir shows through elsewhere');
      assert.deepEqual(await names('opq'), ['fresh'], 'opaque: neither stale upper children nor the lower child');
      // Whiteouts in a dir the lower lacks are listed by readdir but never found by lookup.
      await assert.rejects(lstat(join(ov.merged, 'd3', 'f000')), { code: 'ENOENT' });
      assert.equal((await lstat(join(ov.merged, 'd3', 'f030'))).isFile(), true);
      assert.equal(await readFile(join(ov.merged, 'rep', 'was-dir'), 'utf8'), 'a file in B');
    } finally {
      await unmountQuietly(ov);
    }
  });
});
