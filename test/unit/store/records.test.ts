// Commit records and heads parse strictly: unknown fields, wrong types and out-of-range numbers are refused.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { asDigest, claimSchema, commitRecordSchema, divergentRecordSchema, headSchema } from '../../../src/store/index.js';
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
  it('accepts the full checkpoints per container, or none (a head of an older version)', () => {
    const withFulls = { ...head, lastFull: { web: 7, dns: 4 } };
    assert.deepEqual(headSchema.parse(withFulls), withFulls);
    assert.equal(headSchema.safeParse({ ...head, lastFull: {} }).success, true);
    assert.equal('lastFull' in headSchema.parse(head), false);
  });
  it('refuses a full checkpoint above its container\'s last seq, of a container the head does not name, or not a seq', () => {
    for (const lastFull of [{ web: 10 }, { dns: 5 }, { fw: 1 }, { web: 0 }, { web: -1 }, { web: 1.5 }, { '../x': 1 }, { web: '3' }]) {
      assert.equal(headSchema.safeParse({ ...head, lastFull }).success, false, JSON.stringify(lastFull));
    }
  });
});

describe('claimSchema', () => {
  const claim = { version: 1, generation: 5, host: 'host-b', claimedAt: new Date().toISOString(), from: { generation: 4, containers: { web: 17, dns: 0 } } };
  it('accepts a claim, the first one (following nothing) included', () => {
    assert.deepEqual(claimSchema.parse(JSON.parse(JSON.stringify(claim))), claim);
    assert.equal(claimSchema.safeParse({ ...claim, generation: 1, from: { generation: 0, containers: {} } }).success, true);
  });
  it('refuses extra fields, bad hosts, names and seqs, and a claim that does not follow an older generation', () => {
    const bad: unknown[] = [
      { ...claim, extra: 1 },
      { ...claim, version: 2 },
      { ...claim, host: 'host b' },
      { ...claim, host: '' },
      { ...claim, host: 'h'.repeat(65) },
      { ...claim, claimedAt: 'now' },
      { ...claim, generation: 0, from: { generation: 0, containers: {} } },
      { ...claim, generation: 5.5 },
      { ...claim, generation: '5' },
      { ...claim, from: { generation: 5, containers: {} } },
      { ...claim, from: { generation: 6, containers: {} } },
      { ...claim, from: { generation: 4, containers: { '../x': 1 } } },
      { ...claim, from: { generation: 4, containers: { web: -1 } } },
      { ...claim, from: { generation: 4, containers: { web: 1.5 } } },
      { ...claim, from: { generation: 4, containers: {}, extra: 1 } },
      { ...claim, from: { generation: 4 } },
      { version: 1, generation: 5, host: 'host-b', claimedAt: claim.claimedAt },
    ];
    for (const b of bad) assert.equal(claimSchema.safeParse(b).success, false, JSON.stringify(b));
  });
});

describe('divergentRecordSchema', () => {
  const rec = {
    version: 1, host: 'host-a', generation: 4, claimGeneration: 5, container: 'web', fromSeq: 17, lastShippedSeq: 19,
    digest: 'cd'.repeat(32), size: 2048, counts: { files: 3, deletions: 1, bytes: 4000 }, savedAt: new Date().toISOString(),
    reason: 'demoted: generation 5 claimed by host-b',
  };
  it('accepts a record, a tail of never-shipped changes included', () => {
    assert.deepEqual(divergentRecordSchema.parse(JSON.parse(JSON.stringify(rec))), rec);
    assert.equal(divergentRecordSchema.safeParse({ ...rec, fromSeq: 0, lastShippedSeq: 0 }).success, true);
  });
  it('refuses anything else', () => {
    const bad: unknown[] = [
      { ...rec, extra: 1 },
      { ...rec, host: '../x' },
      { ...rec, container: '.web' },
      { ...rec, digest: 'CD'.repeat(32) },
      { ...rec, size: -1 },
      { ...rec, fromSeq: -1 },
      { ...rec, lastShippedSeq: 'x' },
      { ...rec, counts: { files: 1, deletions: 0 } },
      { ...rec, savedAt: 'today' },
      { ...rec, reason: '' },
      { ...rec, reason: 'two\nlines' },
      { ...rec, reason: '\u001b[31mred' },
      { ...rec, reason: 'x'.repeat(501) },
      { ...rec, claimGeneration: 4 },
      { ...rec, claimGeneration: 3 },
    ];
    for (const b of bad) assert.equal(divergentRecordSchema.safeParse(b).success, false, JSON.stringify(b));
  });
});
