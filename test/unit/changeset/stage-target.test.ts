// Where a commit is staged (stage-target.ts), on real directories: the tmp dir must lie outside the upper dir. A
// name that merely starts with two dots (`..foo`) is inside it; the failure that made an undo necessary stays the
// cause of a StageUndoError.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { StageUndoError } from '../../../src/changeset/errors.js';
import { checkTarget } from '../../../src/changeset/stage-target.js';

describe('checkTarget', () => {
  let base: string;
  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'tl-target-'));
    await mkdir(join(base, 'upper', '..foo'), { recursive: true });
    await mkdir(join(base, '..tmp'), { recursive: true });
  });
  after(async () => {
    if (base) await rm(base, { recursive: true, force: true });
  });

  it('refuses a tmp dir inside the upper dir, also one named ..foo', async () => {
    await assert.rejects(checkTarget({ upperDir: join(base, 'upper'), tmpDir: join(base, 'upper', '..foo') }), /tmp dir must lie outside the upper dir/);
    await assert.rejects(checkTarget({ upperDir: join(base, 'upper'), tmpDir: join(base, 'upper', 'sub') }), /tmp dir must lie outside the upper dir/);
    await assert.rejects(checkTarget({ upperDir: join(base, 'upper'), tmpDir: join(base, 'upper') }), /tmp dir must lie outside the upper dir/);
  });

  it('accepts a tmp dir beside the upper dir, also one named ..tmp', async () => {
    await checkTarget({ upperDir: join(base, 'upper'), tmpDir: join(base, '..tmp') });
    await checkTarget({ upperDir: join(base, 'upper'), tmpDir: join(base, 'tmp') });
  });
});

describe('StageUndoError', () => {
  it('keeps the failure that made the undo necessary as its cause, and the undo\'s own error', () => {
    const original = Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
    const undo = new Error('EIO while restoring a/b');
    const err = new StageUndoError('staging failed and undoing it failed', { path: '/upper' }, { cause: original, undoError: undo });
    assert.equal(err.cause, original);
    assert.equal((err.cause as NodeJS.ErrnoException).code, 'ENOSPC');
    assert.equal(err.undoError, undo);
    assert.equal(err.code, 'STAGE_UNDO_FAILED');
  });
});
