import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  encodeLine, parseHeader, parseRecordLine, recordPath, undoPathProblem, UndoLogCorruptError, type UndoRecord,
} from '../../../src/changeset/undo-log.js';

const line = (r: unknown): string => JSON.stringify(r);

describe('undo log records', () => {
  it('round-trips every kind of record', () => {
    const records: UndoRecord[] = [
      { o: 'C', p: 'etc/app.conf' },
      { o: 'R', p: 'var/lib/db', u: 0 },
      { o: 'R', px: Buffer.from([0x61, 0x2f, 0xff, 0xfe]).toString('hex'), u: 7 },
      { o: 'D', p: '', uid: 0, gid: 0, mode: 0o755, at: '1700000000123456789', mt: '-5000000000' },
      { o: 'D', p: 'srv/data', uid: 1000, gid: 1000, mode: 0o2775, at: '0', mt: '1' },
      { o: 'X', p: 'srv', x: [['trusted.overlay.opaque', '79'], ['user.note', '']] },
      { o: 'X', p: '', x: [] },
    ];
    for (const r of records) {
      const text = encodeLine(r);
      assert.ok(text.endsWith('\n') && !text.slice(0, -1).includes('\n'), 'one line each');
      assert.deepEqual(parseRecordLine(text.slice(0, -1), 'test'), r);
    }
    assert.deepEqual(recordPath({ o: 'R', px: '612fff', u: 1 }), Buffer.from([0x61, 0x2f, 0xff]));
  });

  it('refuses paths that could leave the upper dir or confuse it', () => {
    const bad: unknown[] = [
      { o: 'C', p: '../etc/passwd' }, { o: 'C', p: 'a/../../x' }, { o: 'C', p: '/etc/passwd' }, { o: 'C', p: 'a//b' },
      { o: 'C', p: 'a/' }, { o: 'C', p: './a' }, { o: 'C', p: 'a\0b' }, { o: 'C', p: '' }, { o: 'C', p: '.' },
      { o: 'R', p: '..', u: 1 }, { o: 'R', p: '', u: 1 },
      // Raw bytes get the same rules: "../x", "/x", "a\0".
      { o: 'R', px: Buffer.from('../x').toString('hex'), u: 1 }, { o: 'R', px: Buffer.from('/x').toString('hex'), u: 1 },
      { o: 'R', px: '6100', u: 1 }, { o: 'R', px: 'zz', u: 1 }, { o: 'R', px: '', u: 1 },
      { o: 'D', p: '../up', uid: 0, gid: 0, mode: 0o755, at: '0', mt: '0' },
      { o: 'X', p: 'a/../..', x: [] },
    ];
    for (const r of bad) assert.throws(() => parseRecordLine(line(r), 'test'), UndoLogCorruptError, line(r));
  });

  it('refuses malformed records', () => {
    const bad: unknown[] = [
      { o: 'R', p: 'a', px: '61', u: 1 }, { o: 'R', u: 1 }, { o: 'R', p: 'a', u: -1 }, { o: 'R', p: 'a', u: 1.5 },
      // An undo slot is a plain number inside the undo area, never a path.
      { o: 'R', p: 'a', u: '../../etc' },
      { o: 'C', p: 'a', extra: 1 }, { o: 'Z', p: 'a' }, { p: 'a' },
      { o: 'D', p: 'a', uid: 0, gid: 0, mode: 0o17777, at: '0', mt: '0' }, { o: 'D', p: 'a', uid: -1, gid: 0, mode: 0, at: '0', mt: '0' },
      { o: 'D', p: 'a', uid: 0, gid: 0, mode: 0, at: '1e9', mt: '0' }, { o: 'X', p: 'a', x: [['', '00']] }, { o: 'X', p: 'a', x: [['user.a', '0']] },
    ];
    for (const r of bad) assert.throws(() => parseRecordLine(line(r), 'test'), UndoLogCorruptError, line(r));
    for (const text of ['', '{', 'null', '[]', '{"o":"C","p":"a"} trailing']) assert.throws(() => parseRecordLine(text, 'test'), UndoLogCorruptError, text);
  });

  it('checks raw paths component by component', () => {
    assert.equal(undoPathProblem(Buffer.from('a/...b/..c'), false), null);
    assert.equal(undoPathProblem(Buffer.from(''), true), null);
    assert.match(undoPathProblem(Buffer.from(''), false) ?? '', /upper dir itself/);
    assert.match(undoPathProblem(Buffer.from('a/..'), false) ?? '', /'\.\.'/);
    assert.match(undoPathProblem(Buffer.from('a'.repeat(5000)), false) ?? '', /too long/);
  });
});

describe('undo log header', () => {
  const header = { v: 1, kind: 'delta', bootId: 'b1', startedAt: '2026-01-01T00:00:00.000Z', intent: { container: 'web', twinId: 'abc', generation: 2, seq: 9, digest: 'f'.repeat(64) } };
  it('reads a complete header', () => {
    assert.deepEqual(parseHeader(line(header)), header);
    assert.deepEqual(parseHeader(line({ ...header, intent: null })), { ...header, intent: null });
  });
  it('says nothing was done when there is none', () => {
    assert.equal(parseHeader(null), null);
  });
  it('refuses a complete header it cannot trust', () => {
    for (const h of [{ ...header, v: 2 }, { ...header, kind: 'other' }, { ...header, intent: { ...header.intent, seq: -1 } }, { ...header, extra: true }]) {
      assert.throws(() => parseHeader(line(h)), UndoLogCorruptError);
    }
    assert.throws(() => parseHeader('{"v":1,'), UndoLogCorruptError);
  });
});
