// Signed commits on a real s3rver (issue 8 item 3): records, heads, specs, claims and releases written by a bucket
// writer without a trusted key — unsigned, signed by a stranger, a flipped bit, a signed object replayed at another
// seq, generation, container or group, a key signing for another host — are refused, reported in the status and
// logged once; generation discovery passes over forged generations with bounded work; a key rotation keeps what the
// new key signed and refuses what only the removed key signed.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { claimGeneration } from '../../../src/agent/claims.js';
import { successorOf } from '../../../src/agent/ownership.js';
import { silentLogger, type Logger } from '../../../src/log/logger.js';
import {
  Bucket,
  MAX_UNSIGNED_GENERATIONS,
  Signatures,
  SigningKey,
  type BlobStore,
  type Claim,
  type Generation,
  type Head,
  type S3BlobStore,
  type Seq,
} from '../../../src/store/index.js';
import { testS3Store, withS3, type TestS3 } from '../../support/s3.js';
import { collect, logCollector, record, WrappedStore } from './helpers.js';

const g = (n: number): Generation => n as Generation;
const hostA = SigningKey.generate('host-a');
const hostB = SigningKey.generate('host-b');
/** Someone who can write the bucket and made a key of their own, naming it host-a. */
const mallory = SigningKey.generate('host-a');

const claim = (n: number, host: string, from = n - 1): Claim => ({
  version: 1, generation: g(n), host, claimedAt: new Date().toISOString(), from: { generation: g(from), containers: { web: 3 as Seq } },
});
const head = (n: number, seq: number, writer = 'host-a'): Head => ({
  version: 1, generation: g(n), seq: seq as Seq, writer, updatedAt: new Date().toISOString(), containers: seq > 0 ? { web: seq as Seq } : {},
});
const spec = (name: string, extra: object = {}): object => ({ version: 1, name, image: 'tl-web:1', imageId: `sha256:${'12'.repeat(32)}`, user: 'www', networkMode: 'none', labels: {}, ...extra });

describe('signed objects on s3rver', () => {
  let s3: TestS3;
  let store: S3BlobStore;
  let groupNo = 0;
  let group = '';

  /** A bucket of the current group signing as `signer` and trusting `trusted` (default: host-a and host-b). */
  const as = (signer: SigningKey | null, opts: { trusted?: SigningKey[]; acceptUnsigned?: boolean; store?: BlobStore; group?: string; log?: Logger; maxListedGenerations?: number } = {}): Bucket =>
    new Bucket(opts.store ?? store, {
      ...(opts.maxListedGenerations === undefined ? {} : { maxListedGenerations: opts.maxListedGenerations }),
      prefix: 'tl/signed',
      group: opts.group ?? group,
      signatures: new Signatures({ signer, trusted: (opts.trusted ?? [hostA, hostB]).map((k) => k.trusted), acceptUnsigned: opts.acceptUnsigned ?? false }),
      log: opts.log ?? silentLogger,
    });
  const fresh = (): void => {
    group = `s${++groupNo}`;
  };
  const raw = async (key: string): Promise<Buffer> => {
    const body = await store.getBuffer(key, 1 << 20);
    assert.ok(body, `${key} is there`);
    return body;
  };
  const edit = (body: Buffer, change: object): Buffer => Buffer.from(JSON.stringify({ ...(JSON.parse(body.toString('utf8')) as object), ...change }));
  const reasonsOf = (b: Bucket): Map<string, string> => new Map(b.signatureStatus().refused.recent.map((r) => [r.key, r.reason]));

  before(async () => {
    s3 = await withS3();
    store = testS3Store(s3);
  });
  after(async () => {
    store?.destroy();
    await s3?.close();
  });

  it('records: only those a trusted key signed for their own key are read; the others are error items in the status', async () => {
    fresh();
    const a = as(hostA);
    const reader = as(null);
    for (const s of [1, 2, 3]) await a.writeRecord(record(1, s, 'web', s - 1));
    const k = (s: number): string => a.journalKey(g(1), s as Seq);
    // 4: unsigned. 5: signed by a key the group does not trust. 6: record 3 with its seq edited to 6 (its signature
    // kept). 7: record 3 replayed verbatim at seq 7. 8: a record of generation 2 replayed into generation 1.
    // 9: a record of another group replayed here. 10: host-b's key signing a record written as host-a.
    await store.put(k(4), Buffer.from(JSON.stringify(record(1, 4))));
    await as(mallory).writeRecord(record(1, 5));
    await store.put(k(6), edit(await raw(k(3)), { seq: 6 }));
    await store.put(k(7), await raw(k(3)));
    await a.writeRecord(record(2, 8));
    await store.put(k(8), edit(await raw(a.journalKey(g(2), 8 as Seq)), {}));
    const other = as(hostA, { group: `${group}-other` });
    await other.writeRecord(record(1, 9));
    await store.put(k(9), await raw(other.journalKey(g(1), 9 as Seq)));
    await as(hostB).writeRecord(record(1, 10));

    const items = await collect(reader.listRecords(g(1), 0));
    assert.deepEqual(items.filter((i) => 'record' in i).map((i) => i.seq), [1, 2, 3]);
    const errors = new Map<number, string>(items.flatMap((i) => ('error' in i ? [[i.seq, i.error] as const] : [])));
    assert.match(errors.get(4) ?? '', /^record refused: not signed/);
    assert.match(errors.get(5) ?? '', new RegExp(`signed by key ${mallory.keyId}, which is not among the group's trusted keys`));
    for (const s of [6, 7, 8, 9]) assert.match(errors.get(s) ?? '', /does not verify for this content at this key in group/, `seq ${s}`);
    assert.match(errors.get(10) ?? '', /written as host host-a but signed by the key of host host-b/);
    await assert.rejects(reader.readRecord(g(1), 7 as Seq), { code: 'RECORD_INVALID' });

    const reasons = reasonsOf(reader);
    for (const s of [4, 5, 6, 7, 8, 9, 10]) assert.ok(reasons.has(k(s)), `seq ${s} is in the status`);
    const status = reader.signatureStatus();
    assert.equal(status.required, true);
    assert.equal(status.signer, null);
    assert.deepEqual(status.trusted.map((t) => t.host), ['host-a', 'host-b']);
  });

  it('heads: unsigned, a stranger\'s, or another generation\'s are refused; the last good head is not replaced', async () => {
    fresh();
    const a = as(hostA);
    const reader = as(null);
    await a.writeHead(head(1, 3));
    const first = await reader.readHead(g(1));
    assert.equal(first.status, 'ok');
    await store.put(a.headKey(g(2)), Buffer.from(JSON.stringify(head(2, 99))));
    assert.deepEqual(await reader.readHead(g(2)), { status: 'refused', reason: 'not signed (no signature field); unsigned objects are refused' });
    await store.put(a.headKey(g(3)), await raw(a.headKey(g(1))));
    const replayed = await reader.readHead(g(3));
    assert.ok(replayed.status === 'refused' && /does not verify/.test(replayed.reason), JSON.stringify(replayed));
    await as(mallory).writeHead(head(1, 1000));
    const forged = await reader.readHead(g(1), first.status === 'ok' ? first.etag : undefined);
    assert.ok(forged.status === 'refused' && /not among the group's trusted keys/.test(forged.reason), JSON.stringify(forged));
    // A head replayed at its own key (an older head of the same generation) verifies: heads only say how far to read;
    // what is staged is what the signed records say. See the README's "Signed commits".
    await a.writeHead(head(1, 4));
    const seq4 = await raw(a.headKey(g(1)));
    await a.writeHead(head(1, 5));
    await store.put(a.headKey(g(1)), seq4);
    const rolled = await reader.readHead(g(1));
    assert.ok(rolled.status === 'ok' && rolled.head.seq === 4);
  });

  it('specs: an unsigned spec asking for host networking, a spec replayed at another container, a tampered one are refused', async () => {
    fresh();
    const a = as(hostA);
    const reader = as(null);
    await a.putSpec('web', spec('web'));
    assert.deepEqual(await reader.getSpec('web'), spec('web'));
    await store.put(a.specKey('evil'), Buffer.from(JSON.stringify(spec('evil', { networkMode: 'host', user: 'root', image: 'attacker/rootkit', labels: { 'twinlayer.enable': 'true' } }))));
    await assert.rejects(reader.getSpec('evil'), (err: Error & { code?: string }) => err.code === 'SPEC_INVALID' && /not signed/.test(err.message));
    await store.put(a.specKey('db'), await raw(a.specKey('web')));
    await assert.rejects(reader.getSpec('db'), /does not verify/);
    await store.put(a.specKey('web'), edit(await raw(a.specKey('web')), { networkMode: 'host' }));
    await assert.rejects(reader.getSpec('web'), /does not verify/);
    const other = as(hostA, { group: `${group}-other` });
    await other.putSpec('web', spec('web', { user: 'root' }));
    await store.put(a.specKey('web'), await raw(other.specKey('web')));
    await assert.rejects(reader.getSpec('web'), /does not verify for this content at this key in group/);
    assert.ok(['evil', 'db', 'web'].every((n) => reasonsOf(reader).has(a.specKey(n))));
  });

  it('claims and releases: junk neither fences the owner nor blocks a promotion, which claims past it', async () => {
    fresh();
    const { log, lines } = logCollector();
    const a = as(hostA, { log });
    const b = as(hostB);
    assert.deepEqual(await a.claimGeneration(claim(1, 'host-a', 0)), { won: true });
    await a.writeHead(head(1, 3));
    // A bucket writer without a key claims generation 2 (and names host-b), and copies claim 1 to generation 3.
    await store.put(a.claimKey(g(2)), Buffer.from(JSON.stringify(claim(2, 'host-b'))));
    await store.put(a.headKey(g(2)), Buffer.from(JSON.stringify(head(2, 0, 'host-b'))));
    await store.put(a.claimKey(g(3)), await raw(a.claimKey(g(1))));
    // The owner of 1 is not fenced, and sees no newer generation.
    assert.equal(await successorOf(a, g(1)), null);
    assert.equal(await a.newestGenerationFrom(g(1)), 1);
    assert.equal(await a.readClaim(g(2)), null);
    // host-b promotes: generations 2 and 3 are taken by junk; it claims 4.
    const won = await claimGeneration({ bucket: b, hostId: 'host-b', log: silentLogger }, g(2), { generation: 1, containers: { web: 3 } }, { late: false });
    assert.deepEqual(won, { status: 'won', generation: 4 });
    // Everyone agrees: host-a's fence sees host-b's claim of 4, a standby follows 4.
    assert.deepEqual(await successorOf(a, g(1)), { generation: 4, owner: 'host-b', claim: await b.readClaim(g(4)) });
    assert.equal(await as(null).newestGenerationFrom(g(1)), 4);
    assert.equal(await as(null).newestGeneration(), 4);
    // A stranger's claim of 5, and host-a's key signing a claim in host-b's name: refused, host-b stays the owner.
    await as(mallory).claimGeneration(claim(5, 'host-a', 4));
    await as(hostA).claimGeneration(claim(6, 'host-b', 5));
    assert.equal(await successorOf(b, g(4)), null);
    const reasons = reasonsOf(b);
    assert.match(reasons.get(a.claimKey(g(5))) ?? '', /not among the group's trusted keys/);
    assert.match(reasons.get(a.claimKey(g(6))) ?? '', /written as host host-b but signed by the key of host host-a/);
    // Logged once per key however often it was read.
    const logged = lines.filter((l) => l['msg'] === 'bucket object refused: nothing is staged, booted or decided from it' && l['key'] === JSON.stringify(a.claimKey(g(2))));
    assert.equal(logged.length, 1);
    assert.ok((a.signatureStatus().refused.recent.find((r) => r.key === a.claimKey(g(2)))?.count ?? 0) > 1);

    // A forged release would let a fenced MASTER take over: refused, read as no release.
    await store.put(a.layout.releaseKey(g(4)), Buffer.from(JSON.stringify({ version: 1, generation: 4, host: 'host-b', headSeq: 0, headUpdatedAt: null, releasedAt: new Date().toISOString(), reason: 'forged' })));
    assert.equal(await a.readRelease(g(4)), null);
    await b.putRelease({ version: 1, generation: g(4), host: 'host-b', headSeq: 0 as Seq, headUpdatedAt: null, releasedAt: new Date().toISOString(), reason: 'left MASTER' });
    assert.equal((await a.readRelease(g(4)))?.host, 'host-b');
  });

  it('a late claim is refused when the followed generation moved on, also behind an older signed head put back', async () => {
    fresh();
    const a = as(hostA);
    const b = as(hostB);
    assert.deepEqual(await a.claimGeneration(claim(1, 'host-a', 0)), { won: true });
    await a.writeRecord(record(1, 1, 'web', 0));
    await a.writeHead(head(1, 1));
    const oldHead = await raw(a.headKey(g(1)));
    // host-b staged web up to 1 and was cut off; host-a kept the bucket and published 2 and 3.
    await a.writeRecord(record(1, 2, 'web', 1));
    await a.writeRecord(record(1, 3, 'web', 2));
    await a.writeHead(head(1, 3));
    const basis = { generation: 1, containers: { web: 1 } };
    const deps = { bucket: b, hostId: 'host-b', log: silentLogger };
    assert.deepEqual(await claimGeneration(deps, g(2), basis, { late: true }), { status: 'lost', generation: 1, holder: 'host-a' });
    // A bucket writer puts back the head of seq 1 (signed by host-a: it verifies). The records past it still count.
    await store.put(a.headKey(g(1)), oldHead);
    assert.equal((await b.readHead(g(1))).status, 'ok');
    assert.deepEqual(await claimGeneration(deps, g(2), basis, { late: true }), { status: 'lost', generation: 1, holder: 'host-a' });
    // An unsigned record past the head is nobody's publish: it does not count as a move.
    await store.put(a.journalKey(g(1), 4 as Seq), Buffer.from(JSON.stringify(record(1, 4, 'web', 3))));
    assert.deepEqual(await claimGeneration(deps, g(2), { generation: 1, containers: { web: 3 } }, { late: true }), { status: 'won', generation: 2 });
    assert.equal((await a.readClaim(g(2)))?.host, 'host-b');
  });

  it('a forged gen/9007199254740991/ captures nobody, costs a bounded number of reads, and is logged once', async () => {
    fresh();
    const a = as(hostA);
    await a.claimGeneration(claim(1, 'host-a', 0));
    await a.writeHead(head(1, 3));
    const top = g(Number.MAX_SAFE_INTEGER);
    await store.put(a.headKey(top), Buffer.from(JSON.stringify(head(top, 1, 'host-b'))));
    await store.put(a.claimKey(top), Buffer.from(JSON.stringify(claim(top, 'host-b'))));
    const wrap = new WrappedStore(store);
    const { log, lines } = logCollector();
    const reader = as(null, { store: wrap, log });
    assert.deepEqual(await reader.listGenerations(), [1, top], 'the keys are there');
    for (let i = 0; i < 5; i++) {
      wrap.keysRead.length = 0;
      wrap.lists = 0;
      assert.equal(await reader.newestGenerationFrom(g(0)), 1);
      // A LIST round per generation (and one that ends the listing), the forged claim and head (the first time only:
      // then remembered as refused), generation 1's claim.
      assert.deepEqual(wrap.keysRead, i === 0 ? [a.claimKey(top), a.headKey(top), a.claimKey(g(1))] : [a.claimKey(g(1))]);
      assert.ok(wrap.lists <= 3, `${wrap.lists} LIST calls`);
    }
    assert.deepEqual(await reader.newestClaim(), { generation: 1, claim: await a.readClaim(g(1)) });
    const logged = lines.filter((l) => l['msg'] === 'bucket object refused: nothing is staged, booted or decided from it');
    assert.deepEqual(logged.map((l) => l['key']).sort(), [JSON.stringify(a.claimKey(top)), JSON.stringify(a.headKey(top))].sort());
    const inStatus = reader.signatureStatus().refused.recent.find((r) => r.key === a.headKey(top));
    assert.ok(inStatus !== undefined && inStatus.count >= 1 && inStatus.kind === 'head');
    // The probe from a followed generation is not affected: it walks up from 1 and finds nothing newer.
    assert.equal(await reader.newestGenerationFrom(g(1)), 1);
  });

  it('many forged generations above the group\'s: each discovery reads a bounded number, the next goes on below them, and the status alerts', async () => {
    fresh();
    const a = as(hostA);
    await a.claimGeneration(claim(1, 'host-a', 0));
    await a.writeHead(head(1, 3));
    const junk = 2 * MAX_UNSIGNED_GENERATIONS + 22;
    for (let n = 1000; n < 1000 + junk; n++) await store.put(a.headKey(g(n)), Buffer.from(JSON.stringify(head(n, 1))));
    const wrap = new WrappedStore(store);
    const reader = as(null, { store: wrap });
    let refusedCalls = 0;
    let found: number | null = null;
    for (let call = 0; call < 10 && found === null; call++) {
      wrap.keysRead.length = 0;
      try {
        found = await reader.newestGeneration();
      } catch (err) {
        assert.equal((err as Error & { code?: string }).code, 'GENERATIONS_REFUSED');
        refusedCalls++;
      }
      assert.ok(wrap.keysRead.length <= 2 * MAX_UNSIGNED_GENERATIONS + 1, `call ${call} read ${wrap.keysRead.length} keys`);
    }
    assert.equal(found, 1, 'discovery got past the junk');
    assert.equal(refusedCalls, Math.floor(junk / MAX_UNSIGNED_GENERATIONS), 'each call went on below what the one before had read');
    assert.match(reader.signatureStatus().refused.alert ?? '', new RegExp(`^${junk} generations above the newest one the group made are refused`));
    // Remembered: the next discoveries read generation 1's claim only, with no error.
    wrap.keysRead.length = 0;
    assert.equal(await reader.newestGeneration(), 1);
    assert.deepEqual(wrap.keysRead, [a.claimKey(g(1))]);

    // More generations than a listing reads: it stops after a bounded number of LIST rounds, and the status says so.
    const capped = as(null, { store: wrap, maxListedGenerations: 50 });
    wrap.lists = 0;
    await capped.newestGeneration().catch(() => null);
    assert.ok(wrap.lists <= 50, `${wrap.lists} LIST calls`);
    assert.match(capped.signatureStatus().refused.alert ?? '', /more than the 50 generations a listing reads/);
  });

  it('key rotation: both keys trusted while the host switches; removing the old key refuses only what it alone signed', async () => {
    fresh();
    const a1 = hostA;
    const a2 = SigningKey.generate('host-a');
    const before = as(a1);
    await before.claimGeneration(claim(1, 'host-a', 0));
    await before.putSpec('web', spec('web'));
    await before.writeRecord(record(1, 1, 'web'));
    await before.writeHead(head(1, 1));

    // Step 1: every host trusts a1, a2 and b; host-a restarts signing with a2.
    const during = as(a2, { trusted: [a1, a2, hostB] });
    await during.putSpec('web', spec('web', { user: 'www2' }));
    await during.writeRecord(record(1, 2, 'web', 1));
    await during.writeHead(head(1, 2));
    const readerDuring = as(null, { trusted: [a1, a2, hostB] });
    assert.deepEqual((await collect(readerDuring.listRecords(g(1), 0))).map((i) => ('record' in i ? i.seq : `${i.seq}!`)), [1, 2]);
    assert.equal((await readerDuring.readClaim(g(1)))?.host, 'host-a');
    assert.equal((await readerDuring.readHead(g(1))).status, 'ok');
    assert.deepEqual(await readerDuring.getSpec('web'), spec('web', { user: 'www2' }));
    assert.deepEqual(readerDuring.signatureStatus().refused.recent, []);

    // Step 2: a1 is removed everywhere. What only a1 signed is refused (record 1, claim 1); what a2 signed stands,
    // and generation 1 is still the group's through its a2-signed head.
    const readerAfter = as(null, { trusted: [a2, hostB] });
    const items = await collect(readerAfter.listRecords(g(1), 0));
    assert.match('error' in items[0]! ? items[0].error : '', new RegExp(`signed by key ${a1.keyId}, which is not among the group's trusted keys`));
    assert.ok('record' in items[1]! && items[1].record.seq === 2);
    assert.equal(await readerAfter.readClaim(g(1)), null);
    assert.equal((await readerAfter.readHead(g(1))).status, 'ok');
    assert.equal(await readerAfter.newestGeneration(), 1);
    assert.deepEqual(await readerAfter.getSpec('web'), spec('web', { user: 'www2' }));
    // The old key is worth nothing now (stolen with a decommissioned disk, say).
    await as(a1).writeHead(head(1, 50));
    assert.equal((await readerAfter.readHead(g(1))).status, 'refused');
    // And the group goes on with the new key: a new claim verifies.
    await as(a2, { trusted: [a2, hostB] }).claimGeneration(claim(2, 'host-a', 1));
    assert.equal(await readerAfter.newestGenerationFrom(g(1)), 2);
  });

  it('acceptUnsigned: unsigned objects and strangers\' signatures pass, a broken signature by a trusted key does not', async () => {
    fresh();
    const lenient = as(null, { acceptUnsigned: true });
    await lenient.writeRecord(record(1, 1));
    await lenient.putSpec('web', spec('web'));
    await lenient.writeHead(head(1, 1));
    await as(mallory).writeRecord(record(1, 2, 'web', 1));
    await as(hostA).writeRecord(record(1, 3, 'web', 2));
    const k3 = lenient.journalKey(g(1), 3 as Seq);
    await store.put(k3, edit(await raw(k3), { size: 11 }));
    const items = await collect(lenient.listRecords(g(1), 0));
    assert.deepEqual(items.map((i) => ('record' in i ? i.seq : `${i.seq}!`)), [1, 2, '3!']);
    assert.deepEqual(await lenient.getSpec('web'), spec('web'));
    assert.equal((await lenient.readHead(g(1))).status, 'ok');
    assert.equal(lenient.signatureStatus().required, false);
    // The same bucket to a host that requires signatures: nothing of it is usable.
    const strict = as(null);
    assert.deepEqual((await collect(strict.listRecords(g(1), 0))).map((i) => ('record' in i ? i.seq : `${i.seq}!`)), ['1!', '2!', '3!']);
    assert.equal(await strict.newestGeneration(), null);
  });
});
