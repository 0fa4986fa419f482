// Commit records and heads parse strictly: unknown fields, wrong types and out-of-range numbers are refused.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { asDigest, commitRecordSchema, headSchema } from '../../../src/store/index.js';
import { record } from '../../integration/store/helpers.js';

describe('commitRecordSchema', () => {
  it('accepts a well-formed record and round-trips it through JSON', () => {
    const rec = record(1, 5, 'web', 3);
    assert.deepEqual(commitRecordSchema.parse(JSON.parse(JSON.stringify(rec))), rec);
  });

  it('refuses anything else', () => {
    const good = record(1, 5, 'web', 3) as unknown as Record<string, unknown>;
    const bad: Array<Record<string, unknown>> = [
      { ...good, extra: 1 },
      { ...good, version: 2 },
      { ...good, seq: 0 },
      { ...good, seq: 1.5 },
      { ...good, seq: Number.MAX_SAFE_INTEGER + 1 },
      { ...good, seq: '5' },
      { ...good, parentSeq: 5 },
      { ...good, parentSeq: -1 },
      { ...good, container: '../x' },
      { ...good, container: '' },
      { ...good, digest: 'AB'.repeat(32) },
      { ...good, digest: 'ab'.repeat(31) },
      { ...good, kind: 'partial' },
      { ...good, size: -1 },
      { ...good, counts: { files: 1, deletions: 0 } },
      { ...good, counts: { files: 1, deletions: 0, bytes: 0, more: 1 } },
      { ...good, firstWriteAt: 'yesterday' },
      { ...good, writer: 'host a' },
    ];
    for (const b of bad) assert.equal(commitRecordSchema.safeParse(b).success, false, JSON.stringify(b));
    assert.throws(() => asDigest('xyz'), { code: 'DIGEST_INVALID' });
  });
});

describe('headSchema', () => {
  const head = { version: 1, generation: 2, seq: 9, writer: 'host-a', updatedAt: new Date().toISOString(), containers: { web: 9, dns: 4 } };
  it('accepts a head, an empty generation included', () => {
    assert.deepEqual(headSchema.parse(head), head);
    assert.equal(headSchema.safeParse({ ...head, seq: 0, containers: {} }).success, true);
  });
  it('refuses extra fields, bad names and container seqs above the head', () => {
    for (const b of [{ ...head, x: 1 }, { ...head, containers: { '../x': 1 } }, { ...head, containers: { web: 10 } }, { ...head, containers: { web: 0 } }, { ...head, generation: -1 }]) {
      assert.equal(headSchema.safeParse(b).success, false, JSON.stringify(b));
    }
  });
});
