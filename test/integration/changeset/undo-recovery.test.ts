// Recovery from undo logs written by hand: a line torn by kill -9 is ignored, a torn intent means nothing was done,
// and a corrupt or hostile log (paths with `..`, absolute paths, symlinks in the upper dir, the log itself a symlink)
// changes nothing, neither in the upper dir nor outside it. Root only (chown, xattrs).
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { abandonStaging, recoverStaging, stageChangeset } from '../../../src/changeset/index.js';
import { currentBootId } from '../../../src/changeset/staging-txn.js';
import { requireRoot } from '../../support/overlay.js';
import { diffStates, upperState, type UpperState } from '../../support/upper-state.js';
import { file, tarOf, writeGz } from './craft-tar.js';

let base = '';
let upper = '';
let tmp = '';
let outside = '';

const target = (): { upperDir: string; tmpDir: string } => ({ upperDir: upper, tmpDir: tmp });

async function header(intent: unknown = null): Promise<string> {
  return JSON.stringify({ v: 1, kind: 'delta', bootId: await currentBootId(), startedAt: new Date().toISOString(), intent });
}

/** Writes <tmp>/txn/undo.log from complete lines (each gets its newline) and an optional torn tail, and fills undo
 *  slots. */
async function writeTxn(lines: string[], opts: { torn?: string; slots?: Record<number, string> } = {}): Promise<void> {
  const dir = join(tmp, 'txn');
  await mkdir(join(dir, 'undo'), { recursive: true });
  await writeFile(join(dir, 'undo.log'), lines.map((l) => `${l}\n`).join('') + (opts.torn ?? ''));
  for (const [n, content] of Object.entries(opts.slots ?? {})) await writeFile(join(dir, 'undo', n), content);
}

async function both(): Promise<{ upper: UpperState; outside: UpperState }> {
  return { upper: await upperState(upper), outside: await upperState(outside) };
}

async function expectUntouched(lines: string[], slots: Record<number, string> = {}): Promise<void> {
  await writeTxn([await header(), ...lines], { slots });
  const was = await both();
  await assert.rejects(recoverStaging(target(), () => false), (err: unknown) => {
    assert.equal((err as { code?: string }).code, 'UNDO_LOG_CORRUPT', String(err));
    return true;
  }, lines.join(' | '));
  const now = await both();
  assert.deepEqual(diffStates(was.outside, now.outside, 0n), [], `outside the upper dir: ${lines.join(' | ')}`);
  assert.deepEqual(diffStates(was.upper, now.upper, 0n), [], `the upper dir: ${lines.join(' | ')}`);
  // The log stays: the twin is held (not staged into, not booted) until someone looks.
  assert.ok((await readdir(tmp)).includes('txn'));
}

describe('undo log recovery', () => {
  before(async () => {
    requireRoot();
    base = await mkdtemp('/tmp/twinlayer-undo-');
  });
  after(async () => {
    if (base !== '') await rm(base, { recursive: true, force: true });
  });
  beforeEach(async () => {
    await rm(join(base, 'case'), { recursive: true, force: true });
    upper = join(base, 'case', 'upper');
    tmp = join(base, 'case', 'tmp');
    outside = join(base, 'case', 'outside');
    await mkdir(join(upper, 'sub'), { recursive: true });
    await mkdir(tmp);
    await mkdir(join(outside, 'dir'), { recursive: true, mode: 0o755 });
    await writeFile(join(outside, 'victim'), 'outside the upper dir');
    execFileSync('setfattr', ['-n', 'user.keep', '-v', 'yes', join(outside, 'dir')]);
    await writeFile(join(upper, 'sub', 'file'), 'in the upper dir');
    await symlink(outside, join(upper, 'link'));
  });

  it('a twin never staged into (no tmp dir) has nothing to recover, and its tmp dir is not made', async () => {
    await rm(tmp, { recursive: true });
    const was = await both();
    assert.deepEqual(await recoverStaging(target(), () => false), { action: 'none' });
    assert.deepEqual(diffStates(was.upper, (await both()).upper, 0n), []);
    await assert.rejects(readdir(tmp), { code: 'ENOENT' }, 'recovery made no tmp dir: on a full disk its mkdir would fail');
  });

  it('undoes every complete line and ignores a line torn by kill -9', async () => {
    await writeFile(join(upper, 'created'), 'made by the commit');
    await writeFile(join(upper, 'replaced'), 'new content');
    await writeFile(join(upper, 'untouched'), 'was here before');
    await writeTxn([await header(), JSON.stringify({ o: 'C', p: 'created' }), JSON.stringify({ o: 'R', p: 'replaced', u: 0 })], {
      slots: { 0: 'old content' },
      // The process died while writing this line: its step never started.
      torn: '{"o":"C","p":"untouch',
    });
    const outcome = await recoverStaging(target(), () => false);
    assert.deepEqual(outcome, { action: 'undone', intent: null, steps: 2, rebooted: false });
    assert.deepEqual((await readdir(upper)).sort(), ['link', 'replaced', 'sub', 'untouched']);
    assert.equal(await readFile(join(upper, 'replaced'), 'utf8'), 'old content');
    assert.deepEqual(await readdir(tmp), []);
  });

  it('a torn intent means nothing was done', async () => {
    await writeTxn([], { torn: (await header()).slice(0, 30) });
    const was = await upperState(upper);
    assert.deepEqual(await recoverStaging(target(), () => false), { action: 'none' });
    assert.deepEqual(diffStates(was, await upperState(upper), 0n), []);
    assert.deepEqual(await readdir(tmp), []);
  });

  it('rolls a recorded commit forward: nothing is undone', async () => {
    await writeFile(join(upper, 'created'), 'made by the commit');
    const intent = { container: 'web', twinId: 't1', generation: 3, seq: 7, digest: 'd' };
    await writeTxn([await header(intent), JSON.stringify({ o: 'C', p: 'created' })]);
    const outcome = await recoverStaging(target(), (i) => i.seq === 7 && i.container === 'web');
    assert.deepEqual(outcome, { action: 'rolled-forward', intent });
    assert.equal(await readFile(join(upper, 'created'), 'utf8'), 'made by the commit');
    assert.deepEqual(await readdir(tmp), []);
  });

  it('a corrupt line anywhere changes nothing (the whole log is read first)', async () => {
    await writeFile(join(upper, 'a'), 'a');
    await expectUntouched([JSON.stringify({ o: 'C', p: 'a' }), 'garbage', JSON.stringify({ o: 'C', p: 'sub/file' })]);
    await rm(join(tmp, 'txn'), { recursive: true });
    await expectUntouched([JSON.stringify({ o: 'C', p: 'a' }), '', JSON.stringify({ o: 'C', p: 'sub/file' })]);
  });

  it('refuses paths that leave the upper dir, before undoing anything', async () => {
    const hostile = [
      { o: 'C', p: '../outside/victim' }, { o: 'C', p: `${outside}/victim` }, { o: 'R', p: '../outside/victim', u: 0 },
      { o: 'R', px: Buffer.from('../outside/victim').toString('hex'), u: 0 }, { o: 'D', p: '../outside/dir', uid: 1, gid: 1, mode: 0o777, at: '0', mt: '0' },
      { o: 'X', p: '../outside/dir', x: [] }, { o: 'C', p: 'sub/../../outside/victim' },
    ];
    for (const h of hostile) {
      await rm(join(tmp, 'txn'), { recursive: true, force: true });
      // A valid line after it: undone first in reverse order, were the log not checked whole beforehand.
      await expectUntouched([JSON.stringify(h), JSON.stringify({ o: 'C', p: 'sub/file' })], { 0: 'evil' });
    }
  });

  it('never goes through a symlink in the upper dir', async () => {
    const hostile = [
      { o: 'C', p: 'link/victim' }, { o: 'R', p: 'link/victim', u: 0 }, { o: 'D', p: 'link', uid: 1, gid: 1, mode: 0o777, at: '0', mt: '0' },
      { o: 'D', p: 'link/dir', uid: 1, gid: 1, mode: 0o777, at: '0', mt: '0' }, { o: 'X', p: 'link', x: [] }, { o: 'X', p: 'link/dir', x: [] },
    ];
    for (const h of hostile) {
      await rm(join(tmp, 'txn'), { recursive: true, force: true });
      await expectUntouched([JSON.stringify(h)], { 0: 'evil' });
    }
  });

  it('refuses to stage over a commit left half staged until it is recovered', async () => {
    await writeFile(join(upper, 'created'), 'made by the interrupted commit');
    await writeTxn([await header(), JSON.stringify({ o: 'C', p: 'created' })]);
    const blob = await writeGz(join(base, 'case', 'next.tar.gz'), tarOf([file('next', 'the next commit')]));
    const was = await upperState(upper);
    await assert.rejects(stageChangeset(blob, 'delta', target()), { code: 'STAGE_PENDING' });
    assert.deepEqual(diffStates(was, await upperState(upper), 0n), []);
    await recoverStaging(target(), () => false);
    await stageChangeset(blob, 'delta', target());
    assert.deepEqual((await readdir(upper)).sort(), ['link', 'next', 'sub']);
  });

  it('abandoning a half-staged commit of a running twin also removes a chunk dir a crash left, and nothing in the upper dir', async () => {
    await mkdir(join(tmp, '.stage-chunks'), { recursive: true });
    await writeFile(join(tmp, '.stage-chunks', 'file-0'), 'an assembly linked into the twin before the crash');
    await writeTxn([await header(), JSON.stringify({ o: 'C', p: 'created' })]);
    const was = await upperState(upper);
    assert.equal(await abandonStaging(target()), true);
    assert.deepEqual((await readdir(tmp)).filter((n) => n === 'txn' || n.startsWith('.stage-')), []);
    assert.deepEqual(diffStates(was, await upperState(upper), 0n), []);
    // With no commit left half staged, the stray goes all the same.
    await mkdir(join(tmp, '.stage-chunks'));
    assert.equal(await abandonStaging(target()), false);
    assert.deepEqual((await readdir(tmp)).filter((n) => n.startsWith('.stage-')), []);
  });

  it('does not follow a log that is a symlink', async () => {
    await mkdir(join(tmp, 'txn'));
    await writeFile(join(base, 'case', 'elsewhere.log'), `${await header()}\n${JSON.stringify({ o: 'C', p: 'sub/file' })}\n`);
    await symlink(join(base, 'case', 'elsewhere.log'), join(tmp, 'txn', 'undo.log'));
    await assert.rejects(recoverStaging(target(), () => false), { code: 'ELOOP' });
    assert.equal(await readFile(join(upper, 'sub', 'file'), 'utf8'), 'in the upper dir');
  });
});
