// Journal listings of bucket input are bounded (review of the volumes merge, finding 4). A bucket writer without a
// key can put any number of keys past a head: a listing reads at most a fixed number of them (junk included) and
// says so; a late claim takes more keys past the followed head than that bound as a move (refused), and a release
// stays valid over junk (keys that do not parse, records that are refused, a gap) and goes stale on a record the
// group signed or on more keys past its head than the bound. On a real s3rver.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { claimGeneration } from '../../../src/agent/claims.js';
import { currentRelease, releaseGeneration } from '../../../src/agent/release.js';
import { silentLogger } from '../../../src/log/logger.js';
import { Bucket, MAX_KEYS_PAST_HEAD, Signatures, SigningKey, type Claim, type Generation, type Head, type S3BlobStore, type Seq } from '../../../src/store/index.js';
import { testS3Store, withS3, type TestS3 } from '../../support/s3.js';
import { collect, describeItems, logCollector, record } from './helpers.js';

const g = (n: number): Generation => n as Generation;
const hostA = SigningKey.generate('host-a');
const hostB = SigningKey.generate('host-b');
const mallory = SigningKey.generate('host-a');

const claim = (n: number, host: string): Claim => ({
  version: 1, generation: g(n), host, claimedAt: new Date().toISOString(), from: { generation: g(n - 1), containers: {} },
});
const head = (n: number, seq: number): Head => ({
  version: 1, generation: g(n), seq: seq as Seq, writer: 'host-a', updatedAt: new Date().toISOString(), containers: seq > 0 ? { web: seq as Seq } : {},
});

describe('bounded journal listings on s3rver', () => {
  let s3: TestS3;
  let store: S3BlobStore;
  let groupNo = 0;
  let group = '';
  const as = (signer: SigningKey | null, log = silentLogger): Bucket =>
    new Bucket(store, { prefix: 'tl/bounds', group, signatures: new Signatures({ signer, trusted: [hostA.trusted, hostB.trusted], acceptUnsigned: false }), log });
  const fresh = (): void => {
    group = `b${++groupNo}`;
  };
  /** Keys a writer without a key puts past seq `from` of generation 1: `n` of them, each a name that does not parse. */
  const junk = async (b: Bucket, from: number, n: number): Promise<void> => {
    const prefix = b.layout.journalPrefix(g(1));
    const last = b.journalKey(g(1), from as Seq).slice(prefix.length).replace(/\.json$/, '');
    for (let i = 0; i < n; i++) await store.put(`${prefix}${last}.junk${String(i).padStart(4, '0')}`, Buffer.from('{}'));
  };

  before(async () => {
    s3 = await withS3();
    store = testS3Store(s3);
  });
  after(async () => {
    store?.destroy();
    await s3?.close();
  });

  it('a listing reads at most maxKeys keys past its seq (junk counts), says it stopped, and the rest comes next time', async () => {
    fresh();
    const a = as(hostA);
    for (const s of [1, 2, 3, 4, 5]) await a.writeRecord(record(1, s, 'web', s - 1));
    let truncated = 0;
    assert.deepEqual(describeItems(await collect(a.listRecords(g(1), 0, { maxKeys: 3, onTruncated: () => truncated++ }))), ['1', '2', '3']);
    assert.equal(truncated, 1);
    assert.deepEqual(describeItems(await collect(a.listRecords(g(1), 3, { maxKeys: 3, onTruncated: () => truncated++ }))), ['4', '5']);
    assert.equal(truncated, 1, 'exactly what is there is no truncation');
    // Junk after seq 1 takes the listing's budget: none of the records past it is read in that listing.
    await junk(a, 1, 4);
    const { log, lines } = logCollector();
    const reader = as(null, log);
    assert.deepEqual(describeItems(await collect(reader.listRecords(g(1), 0, { maxKeys: 5, onTruncated: () => truncated++ }))), ['1']);
    assert.equal(truncated, 2);
    assert.ok(lines.some((l) => l['msg'] === 'journal listing stopped at its bound' && l['maxKeys'] === 5), 'the bound is logged');
    await assert.rejects(collect(reader.listRecords(g(1), 0, { maxKeys: 0 })), RangeError);
    // The default bound is far above what a poll reads.
    assert.deepEqual(describeItems(await collect(reader.listRecords(g(1), 0))), ['1', '2', '3', '4', '5']);
  });

  it('a late claim: refused records and junk past the head are no move, more keys than the bound are', async () => {
    fresh();
    const a = as(hostA);
    const b = as(hostB);
    assert.deepEqual(await a.claimGeneration(claim(1, 'host-a')), { won: true });
    await a.writeRecord(record(1, 1, 'web', 0));
    await a.writeHead(head(1, 1));
    // Past the head: a record of a stranger's key at 2, an unsigned one at 4 (3 missing: a gap), and junk names.
    await as(mallory).writeRecord(record(1, 2, 'web', 1));
    await store.put(a.journalKey(g(1), 4 as Seq), Buffer.from(JSON.stringify(record(1, 4, 'web', 3))));
    await junk(a, 4, 3);
    const basis = { generation: 1, containers: { web: 1 } };
    const deps = { bucket: b, hostId: 'host-b', log: silentLogger };
    // 5 keys past the head (2, 4 and 3 junk names): more than a bound of 4 is a move, whatever they hold.
    assert.deepEqual(await claimGeneration({ ...deps, maxKeysPastHead: 4 }, g(2), basis, { late: true }), { status: 'lost', generation: 1, holder: 'host-a' });
    assert.equal(await a.readClaim(g(2)), null);
    // Within the bound (and with the default one), nothing the group signed moved: won.
    assert.ok(MAX_KEYS_PAST_HEAD > 5);
    assert.deepEqual(await claimGeneration({ ...deps, maxKeysPastHead: 5 }, g(2), basis, { late: true }), { status: 'won', generation: 2 });
    assert.equal((await a.readClaim(g(2)))?.host, 'host-b');
  });

  it('a release holds over junk, refused records and a gap past its head; a signed record or more keys than the bound make it stale', async () => {
    fresh();
    const a = as(hostA);
    const observer = as(null);
    assert.deepEqual(await a.claimGeneration(claim(1, 'host-a')), { won: true });
    await a.writeRecord(record(1, 1, 'web', 0));
    await a.writeHead(head(1, 1));
    await releaseGeneration(a, g(1), 'host-a', 'VRRP BACKUP');
    assert.equal((await currentRelease(observer, g(1))).status, 'valid');
    // A stranger's record at 3 (2 missing: a gap), an unsigned one at 4, names that do not parse.
    await as(mallory).writeRecord(record(1, 3, 'web', 2));
    await store.put(a.journalKey(g(1), 4 as Seq), Buffer.from(JSON.stringify(record(1, 4, 'web', 3))));
    await junk(a, 4, 3);
    assert.equal((await currentRelease(observer, g(1))).status, 'valid', 'nothing the group signed lies past the head');
    const bounded = await currentRelease(observer, g(1), 4);
    assert.equal(bounded.status, 'stale');
    assert.match(bounded.status === 'stale' ? bounded.reason : '', /more than 4 journal keys lie past the head/);
    // The owner publishes past the head it released at: stale.
    await a.writeRecord(record(1, 2, 'web', 1));
    const moved = await currentRelease(observer, g(1));
    assert.equal(moved.status, 'stale');
    assert.match(moved.status === 'stale' ? moved.reason : '', /journal seq 2 lies past the head/);
  });
});
