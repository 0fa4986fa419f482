// Generation claims and divergent tails on the embedded S3 server: two hosts racing for one generation (exactly
// one wins, the loser learns the holder), hostile claim objects, a claimed but empty generation in the listing,
// the cheap fencing probe, and saving and listing divergent tails.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import {
  asDigest,
  Bucket,
  MAX_RECORD_BYTES,
  type Claim,
  type DivergentRecord,
  type Generation,
  type S3BlobStore,
  type Seq,
  type Signatures,
} from '../../../src/store/index.js';
import { startFaultProxy, type FaultProxy } from '../../../src/lab/fault-proxy.js';
import { testS3Store, withS3, type TestS3 } from '../../support/s3.js';
import { logCollector, WrappedStore } from './helpers.js';
import { sealed, testSignatures } from '../../support/signing.js';

const g = (n: number): Generation => n as Generation;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function claim(generation: number, host: string, from = generation - 1, containers: Record<string, number> = { web: 3 }): Claim {
  return {
    version: 1,
    generation: g(generation),
    host,
    claimedAt: new Date().toISOString(),
    from: { generation: g(from), containers: containers as Record<string, Seq> },
  };
}

describe('generation claims on s3rver', () => {
  let s3: TestS3;
  let proxy: FaultProxy;
  /** Two hosts: each its own S3 client (own connections), as two agents would have. */
  let storeA: S3BlobStore;
  let storeB: S3BlobStore;
  let work: string;
  let groupNo = 0;
  let group = '';
  const opts = (): { prefix: string; group: string; signatures: Signatures } => ({ prefix: 'tl/claims', group, signatures: testSignatures() });
  const freshGroup = (): void => {
    group = `g${++groupNo}`;
  };

  before(async () => {
    s3 = await withS3();
    proxy = await startFaultProxy(s3.endpoint);
    storeA = testS3Store(s3);
    storeB = testS3Store(s3);
    work = await mkdtemp(join(tmpdir(), 'twinlayer-claims-'));
  });
  after(async () => {
    storeA?.destroy();
    storeB?.destroy();
    await proxy?.close();
    await s3?.close();
    await rm(work, { recursive: true, force: true });
  });

  it('two hosts claiming the same generation at once: exactly one wins, 20 rounds; the loser gets the holder', async () => {
    freshGroup();
    const a = new Bucket(storeA, opts());
    const b = new Bucket(storeB, opts());
    const wins = { 'host-a': 0, 'host-b': 0 };
    for (let round = 1; round <= 20; round++) {
      const ca = claim(round, 'host-a', round - 1, { web: round * 10 });
      const cb = claim(round, 'host-b', round - 1, { web: round * 10 + 1 });
      const [ra, rb] = await Promise.all([a.claimGeneration(ca), b.claimGeneration(cb)]);
      assert.equal(Number(ra.won) + Number(rb.won), 1, `round ${round}: a ${ra.won}, b ${rb.won}`);
      const [winner, loser] = ra.won ? [ca, rb] : [cb, ra];
      wins[winner.host as keyof typeof wins]++;
      assert.equal(loser.won, false);
      if (loser.won) continue;
      assert.deepEqual(loser.holder, winner);
      assert.deepEqual(await a.readClaim(g(round)), winner);
      assert.deepEqual(await b.readClaim(g(round)), winner);
    }
    assert.equal(wins['host-a'] + wins['host-b'], 20);
    // Claiming a taken generation again, even by its holder, does not win it twice.
    const again = await a.claimGeneration(claim(1, 'host-a'));
    assert.equal(again.won, false);
  });

  it('a claim whose answer was lost is still won on retry', async () => {
    freshGroup();
    const viaProxy = testS3Store({ endpoint: proxy.endpoint, bucket: s3.bucket });
    try {
      const a = new Bucket(viaProxy, opts());
      proxy.fail('lose-answer', 1);
      assert.deepEqual(await a.claimGeneration(claim(1, 'host-a')), { won: true });
      assert.equal(proxy.stats.faults['lose-answer'], 1);
      assert.equal((await a.readClaim(g(1)))?.host, 'host-a');
    } finally {
      proxy.pass();
      viaProxy.destroy();
    }
  });

  it('reads a missing claim as null and refuses hostile or invalid claim objects', async () => {
    freshGroup();
    const { log, lines } = logCollector();
    const b = new Bucket(storeA, { ...opts(), log });
    assert.equal(await b.readClaim(g(1)), null);
    // Signed by a trusted key, so each is refused for what it says, not for its signature.
    const signedAt2 = (body: object): Buffer => sealed(b, 'claim', b.claimKey(g(2)), body);
    const bodies: Array<[string, Buffer]> = [
      ['not JSON', Buffer.from('{"version":1,')],
      ['an array', Buffer.from('[]')],
      ['unsigned', Buffer.from(JSON.stringify(claim(2, 'host-a')))],
      ['another generation', signedAt2(claim(3, 'host-a'))],
      ['an unknown field', signedAt2({ ...claim(2, 'host-a'), admin: true })],
      ['a hostile host', signedAt2({ ...claim(2, 'host-a'), host: '../../etc' })],
      ['a hostile container', signedAt2({ ...claim(2, 'host-a'), from: { generation: 1, containers: { '../x': 1 } } })],
      ['too large', Buffer.alloc(MAX_RECORD_BYTES + 1, 0x20)],
    ];
    const reasons: Record<string, RegExp> = {
      'not JSON': /^not JSON/,
      'an array': /not a JSON object/,
      unsigned: /^not signed/,
      'another generation': /names generation 3, not its key's 2/,
      'an unknown field': /does not parse: .*admin/,
      'a hostile host': /does not parse: host/,
      'a hostile container': /does not parse: from\.containers/,
      'too large': /larger than/,
    };
    for (const [what, body] of bodies) {
      await storeA.put(b.claimKey(g(2)), body);
      // Refused: read as no claim, logged once and listed in the status with the reason.
      assert.equal(await b.readClaim(g(2)), null, what);
      const refused = b.signatureStatus().refused.recent[0];
      assert.equal(refused?.key, b.claimKey(g(2)), what);
      assert.equal(refused.kind, 'claim', what);
      assert.match(refused.reason, reasons[what] ?? /^$/, what);
    }
    assert.ok(lines.some((l) => l['msg'] === 'bucket object refused: nothing is staged, booted or decided from it' && l['key'] === JSON.stringify(b.claimKey(g(2)))));
    // The generation is taken all the same: a claim loses, with no holder to name, and says why in the log.
    assert.deepEqual(await b.claimGeneration(claim(2, 'host-b')), { won: false, holder: null });
    assert.ok(lines.some((l) => l['msg'] === 'generation taken by an object that is not a claim the group signed' && l['key'] === b.claimKey(g(2))));
    // An invalid claim is refused before anything is written.
    await assert.rejects(b.claimGeneration({ ...claim(4, 'host-b'), host: 'bad host' }), { code: 'CLAIM_INVALID' });
    await assert.rejects(b.claimGeneration(claim(4, 'host-b', 4)), { code: 'CLAIM_INVALID' });
    assert.equal(await storeA.exists(b.claimKey(g(4))), false);
  });

  it('lists a generation that holds only a claim, and finds it as the newest', async () => {
    freshGroup();
    const b = new Bucket(storeA, opts());
    assert.equal(await b.newestClaim(), null);
    await b.writeHead({ version: 1, generation: g(1), seq: 0 as Seq, writer: 'host-a', updatedAt: new Date().toISOString(), containers: {} });
    assert.deepEqual(await b.newestClaim(), { generation: 1, claim: null });
    const c9 = claim(9, 'host-b', 1);
    assert.deepEqual(await b.claimGeneration(c9), { won: true });
    const c10 = claim(10, 'host-a', 9);
    assert.deepEqual(await b.claimGeneration(c10), { won: true });
    assert.deepEqual(await b.listGenerations(), [1, 9, 10]);
    assert.deepEqual(await b.newestClaim(), { generation: 10, claim: c10 });
  });

  it('the fencing probe costs two GETs while nothing changed and finds every newer claim', async () => {
    freshGroup();
    const wrap = new WrappedStore(storeA);
    const b = new Bucket(wrap, opts());
    await b.claimGeneration(claim(1, 'host-a', 0));
    wrap.keysRead.length = 0;
    assert.equal(await b.newerClaim(g(1)), null);
    assert.deepEqual(wrap.keysRead, [b.claimKey(g(2)), b.headKey(g(2))]);

    const c2 = claim(2, 'host-b', 1);
    const c3 = claim(3, 'host-a', 2);
    await b.claimGeneration(c2);
    assert.deepEqual(await b.newerClaim(g(1)), { generation: 2, claim: c2 });
    await b.claimGeneration(c3);
    assert.deepEqual(await b.newerClaim(g(1)), { generation: 3, claim: c3 });
    assert.deepEqual(await b.newerClaim(g(2)), { generation: 3, claim: c3 });
    assert.equal(await b.newerClaim(g(3)), null);

    // Far behind (a host back after many failovers): past the walk limit it lists the generations instead.
    for (let n = 4; n <= 45; n++) await b.claimGeneration(claim(n, n % 2 === 0 ? 'host-b' : 'host-a', n - 1));
    wrap.keysRead.length = 0;
    const far = await b.newerClaim(g(1));
    assert.equal(far?.generation, 45);
    assert.equal(far?.claim.host, 'host-a');
    assert.ok(wrap.keysRead.length < 45, `read ${wrap.keysRead.length} keys`);

    // A claim on the way that is refused (junk from a bucket writer without a key) is passed over and reported.
    await storeA.put(b.claimKey(g(46)), Buffer.from('{}'));
    assert.equal((await b.newerClaim(g(44)))?.generation, 45);
    const c47 = claim(47, 'host-b', 45);
    await b.claimGeneration(c47);
    assert.deepEqual(await b.newerClaim(g(44)), { generation: 47, claim: c47 });
    assert.equal(b.signatureStatus().refused.recent[0]?.key, b.claimKey(g(46)));
  });
});

describe('divergent tails on s3rver', () => {
  let s3: TestS3;
  let store: S3BlobStore;
  let work: string;

  before(async () => {
    s3 = await withS3();
    store = testS3Store(s3);
    work = await mkdtemp(join(tmpdir(), 'twinlayer-divergent-'));
  });
  after(async () => {
    store?.destroy();
    await s3?.close();
    await rm(work, { recursive: true, force: true });
  });

  async function tailFile(name: string, size: number): Promise<{ file: string; body: Buffer; digest: ReturnType<typeof asDigest> }> {
    const body = randomBytes(size);
    const file = join(work, name);
    await writeFile(file, body);
    return { file, body, digest: asDigest(sha(body)) };
  }

  function tailRecord(host: string, container: string, t: { body: Buffer; digest: ReturnType<typeof asDigest> }): DivergentRecord {
    return {
      version: 1, host, generation: g(4), claimGeneration: g(5), container, fromSeq: 17 as Seq, lastShippedSeq: 19 as Seq,
      digest: t.digest, size: t.body.length, counts: { files: 2, deletions: 1, bytes: t.body.length },
      savedAt: new Date().toISOString(), reason: 'demoted: generation 5 claimed by host-b',
    };
  }

  it('saves a tail as a content-addressed blob plus a record, and lists it back', async () => {
    const { log, lines } = logCollector();
    const wrap = new WrappedStore(store);
    const b = new Bucket(wrap, { signatures: testSignatures(), prefix: 'tl', group: 'div', log });
    assert.deepEqual(await b.listDivergent(), []);
    const t1 = await tailFile('t1', 3000);
    const t2 = await tailFile('t2', 500);
    const r1 = tailRecord('host-a', 'web', t1);
    const r2 = tailRecord('host-c', 'dns', t2);
    const k1 = await b.putDivergent(r1, t1.file);
    assert.equal(k1, `tl/div/divergent/host-a/4/web/${t1.digest}.json`);
    await b.putDivergent(r2, t2.file);
    // Saving the same tail again is harmless: the same two keys.
    await b.putDivergent(r1, t1.file);
    assert.deepEqual(await b.listDivergent(), [{ key: k1, record: r1 }, { key: b.layout.divergentKey(r2), record: r2 }]);
    assert.deepEqual(await b.listDivergent('host-c'), [{ key: b.layout.divergentKey(r2), record: r2 }]);
    assert.deepEqual(await b.listDivergent('host-b'), []);
    const out = join(work, 't1.out');
    await b.downloadBlob(r1.digest, r1.size, out);
    assert.deepEqual(await readFile(out), t1.body);

    // Keys outside the layout are ignored and logged; a record that disagrees with its key or does not parse is
    // an error item, never a record.
    const dp = b.layout.divergentPrefix;
    await store.put(`${dp}host-a/4/web/notadigest.json`, Buffer.from('{}'));
    await store.put(`${dp}host-a/4/web/${t1.digest}.json.tmp`, Buffer.from('{}'));
    wrap.injected = [`${dp}../4/web/${t1.digest}.json`, `${dp}host-a/4/web/../../x/${t1.digest}.json`];
    const liar = tailRecord('host-a', 'web', t2); // names t2's digest
    const liarKey = b.layout.divergentKey({ host: 'host-a', generation: g(4), container: 'web', digest: asDigest('ef'.repeat(32)) });
    await store.put(liarKey, sealed(b, 'divergent', liarKey, liar));
    await store.put(b.layout.divergentKey({ host: 'host-a', generation: g(4), container: 'web', digest: asDigest('01'.repeat(32)) }), Buffer.from('{"version":1'));
    const items = await b.listDivergent('host-a');
    assert.equal(items.length, 3);
    const errors = items.filter((i) => 'error' in i);
    assert.equal(errors.length, 2);
    assert.ok(errors.some((e) => 'error' in e && /not its key's/.test(e.error)), JSON.stringify(errors));
    assert.ok(errors.some((e) => 'error' in e && /not JSON/.test(e.error)), JSON.stringify(errors));
    assert.ok(items.some((i) => 'record' in i && i.key === k1));
    assert.ok(lines.some((l) => l['msg'] === 'ignored keys that are not in the bucket layout' && l['count'] === 3), JSON.stringify(lines));
    // Listing every host also meets the key that climbs out of the host's folder.
    assert.equal((await b.listDivergent()).length, 4);
    assert.ok(lines.some((l) => l['msg'] === 'ignored keys that are not in the bucket layout' && l['count'] === 4), JSON.stringify(lines));
  });

  it('refuses to save an invalid record and writes nothing', async () => {
    const b = new Bucket(store, { signatures: testSignatures(), prefix: 'tl', group: 'div-bad' });
    const t = await tailFile('bad', 100);
    for (const bad of [{ reason: 'line\nbreak' }, { claimGeneration: g(4) }, { container: '../x' }, { host: 'host a' }]) {
      await assert.rejects(b.putDivergent({ ...tailRecord('host-a', 'web', t), ...bad }, t.file), { code: 'DIVERGENT_INVALID' }, JSON.stringify(bad));
    }
    await assert.rejects(b.putDivergent(tailRecord('..', 'web', t), t.file), TypeError);
    assert.deepEqual(await b.listDivergent(), []);
    assert.equal(await store.exists(b.blobKey(t.digest)), false);
  });
});
