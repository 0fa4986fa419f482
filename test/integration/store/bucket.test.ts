// The bucket layout on a real s3rver: blobs, the journal (order, pagination, gaps, garbage, hostile keys),
// generations, heads, specs, and publication order.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import {
  asDigest,
  BlobDigestMismatchError,
  BlobMissingError,
  blindPutBelowBytes,
  Bucket,
  JournalWriter,
  recoverHead,
  type Generation,
  type HeadRead,
  type S3BlobStore,
  type Seq,
} from '../../../src/store/index.js';
import { testS3Store, withS3, type TestS3 } from '../../support/s3.js';
import { collect, describeItems, eachLimit, logCollector, record, WrappedStore } from './helpers.js';
import { sealed, testSignatures } from '../../support/signing.js';

function refusedReason(r: HeadRead): string {
  assert.equal(r.status, 'refused', JSON.stringify(r));
  return r.status === 'refused' ? r.reason : '';
}

const g = (n: number): Generation => n as Generation;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('Bucket on s3rver', () => {
  let s3: TestS3;
  let store: S3BlobStore;
  let work: string;
  let groupNo = 0;
  /** A fresh group per test: tests share the server, never keys. */
  const fresh = (extra: { log?: import('../../../src/log/logger.js').Logger; wrap?: WrappedStore } = {}): Bucket =>
    new Bucket(extra.wrap ?? store, { signatures: testSignatures(), prefix: 'tl/test', group: `g${++groupNo}`, ...(extra.log === undefined ? {} : { log: extra.log }) });
  /** Places an object file straight into s3rver's directory, as a hostile writer with disk access could. */
  const placeRaw = async (key: string, body: string): Promise<void> => {
    const path = join(s3.bucketDir, `${key}._S3rver_object`);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, body);
  };

  before(async () => {
    s3 = await withS3();
    store = testS3Store(s3);
    work = await mkdtemp(join(tmpdir(), 'twinlayer-bucket-'));
  });
  after(async () => {
    store?.destroy();
    await s3?.close();
    await rm(work, { recursive: true, force: true });
  });

  it('builds the documented keys', () => {
    const b = new Bucket(store, { signatures: testSignatures(), prefix: 'tl', group: 'pair1' });
    const d = asDigest('0f'.repeat(32));
    assert.equal(b.blobKey(d), `tl/pair1/blobs/sha256/0f/${d}`);
    assert.equal(b.headKey(g(3)), 'tl/pair1/gen/3/head.json');
    assert.equal(b.journalKey(g(3), 42 as Seq), 'tl/pair1/gen/3/journal/0000000000000042.json');
    assert.equal(b.specKey('web'), 'tl/pair1/containers/web/spec.json');
    assert.throws(() => b.specKey('../x'));
  });

  it('uploads a large blob once: an existing key is not uploaded again', async () => {
    const wrap = new WrappedStore(store);
    const b = fresh({ wrap });
    const body = randomBytes(blindPutBelowBytes);
    const file = join(work, 'blob1');
    await writeFile(file, body);
    const d = asDigest(sha(body));
    await b.uploadBlob(file, d);
    assert.equal(await store.exists(b.blobKey(d)), true);
    await b.uploadBlob(file, d);
    assert.deepEqual(wrap.puts, [b.blobKey(d)], 'the second upload found the key and skipped');
    const out = join(work, 'blob1.out');
    await b.downloadBlob(d, body.length, out);
    assert.equal(sha(await readFile(out)), d);
  });

  it('puts a small blob without asking whether it is there, and a second put leaves the same bytes', async () => {
    const wrap = new WrappedStore(store);
    const b = fresh({ wrap });
    const body = randomBytes(blindPutBelowBytes - 1);
    const file = join(work, 'blob-small');
    await writeFile(file, body);
    const d = asDigest(sha(body));
    await b.uploadBlob(file, d);
    await b.uploadBlob(file, d);
    assert.deepEqual(wrap.keysRead, [], 'no HEAD before the PUTs');
    assert.deepEqual(wrap.puts, [b.blobKey(d), b.blobKey(d)]);
    const out = join(work, 'blob-small.out');
    await b.downloadBlob(d, body.length, out);
    assert.equal(sha(await readFile(out)), d);
  });

  it('refuses a corrupt blob after its retries and leaves no file', async () => {
    const wrap = new WrappedStore(store);
    const b = new Bucket(wrap, { signatures: testSignatures(), prefix: 'tl/test', group: `g${++groupNo}`, blobRetries: 3 });
    const good = randomBytes(5000);
    const d = asDigest(sha(good));
    const bad = Buffer.from(good);
    bad[100] = (bad[100] ?? 0) ^ 0xff;
    await store.put(b.blobKey(d), bad); // same size, wrong content, right key
    const dir = await mkdtemp(join(work, 'corrupt-'));
    await assert.rejects(b.downloadBlob(d, good.length, join(dir, 'out')), (err: unknown) => {
      assert.ok(err instanceof BlobDigestMismatchError);
      assert.equal(err.code, 'BLOB_DIGEST_MISMATCH');
      assert.match(err.message, new RegExp(d));
      return true;
    });
    assert.equal(wrap.getToFileCalls, 3);
    assert.deepEqual(await readdir(dir), []);

    // A short object (a half upload elsewhere) is refused the same way.
    await store.put(b.blobKey(d), good.subarray(0, 2500));
    await assert.rejects(b.downloadBlob(d, good.length, join(dir, 'out')), BlobDigestMismatchError);
    assert.deepEqual(await readdir(dir), []);
  });

  it('fetches again when the blob is fixed between attempts', async () => {
    const wrap = new WrappedStore(store);
    const b = new Bucket(wrap, { signatures: testSignatures(), prefix: 'tl/test', group: `g${++groupNo}` });
    const good = randomBytes(5000);
    const d = asDigest(sha(good));
    await store.put(b.blobKey(d), randomBytes(5000));
    wrap.beforeGetToFile = async (key, calls) => {
      if (calls === 2) await store.put(key, good);
    };
    const out = join(work, 'fixed.out');
    await b.downloadBlob(d, good.length, out);
    assert.equal(wrap.getToFileCalls, 2);
    assert.equal(sha(await readFile(out)), d);
  });

  it('says so when a blob is missing', async () => {
    const b = fresh();
    await assert.rejects(b.downloadBlob(asDigest('cd'.repeat(32)), 1, join(work, 'missing.out')), BlobMissingError);
  });

  it('lists more than 1000 records in seq order, from any point', async () => {
    const b = fresh();
    const n = 1105;
    const seqs = Array.from({ length: n }, (_, i) => i + 1);
    await eachLimit(seqs, 32, (s) => b.writeRecord(record(1, s, `c${s % 3}`)));
    const all = await collect(b.listRecords(g(1), 0));
    assert.equal(all.length, n);
    assert.deepEqual(all.map((i) => i.seq), seqs);
    assert.ok(all.every((i) => 'record' in i && i.record.seq === i.seq));
    const tail = await collect(b.listRecords(g(1), 1000));
    assert.deepEqual(tail.map((i) => i.seq), seqs.slice(1000));
    assert.deepEqual(await collect(b.listRecords(g(1), n)), []);
  });

  it('yields an error item at a gap and at a record that does not parse, then goes on', async () => {
    const b = fresh();
    for (const s of [1, 2, 5, 7, 8, 9]) await b.writeRecord(record(4, s));
    await store.put(b.journalKey(g(4), 7 as Seq), Buffer.from('{not json'));
    await store.put(b.journalKey(g(4), 8 as Seq), Buffer.from(JSON.stringify({ ...record(4, 8), extra: true })));
    await store.put(b.journalKey(g(4), 9 as Seq), Buffer.from(JSON.stringify(record(4, 10)))); // names another seq
    const items = await collect(b.listRecords(g(4), 0));
    assert.deepEqual(describeItems(items), ['1', '2', '3!', '5', '6!', '7!', '8!', '9!']);
    const gap = items[2];
    assert.ok(gap !== undefined && 'error' in gap && /3\.\.4/.test(gap.error));
    assert.deepEqual(describeItems(await collect(b.listRecords(g(4), 2))), ['3!', '5', '6!', '7!', '8!', '9!']);
    assert.equal(await b.readRecord(g(4), 3 as Seq), null);
    await assert.rejects(b.readRecord(g(4), 7 as Seq), { code: 'RECORD_INVALID' });
    assert.equal((await b.readRecord(g(4), 5 as Seq))?.seq, 5);
  });

  it('ignores and logs hostile journal keys; never reads them', async () => {
    const { log, lines } = logCollector();
    const wrap = new WrappedStore(store);
    const b = fresh({ log, wrap });
    const jp = `${b.layout.journalPrefix(g(1))}`;
    for (const s of [1, 2, 3]) await b.writeRecord(record(1, s));
    const viaApi = [
      'abc.json', 'sub/0000000000000004.json', '000000000000004.json', '00000000000000004.json', '+000000000000004.json',
      '\u0660'.repeat(15) + '\u0664.json', '0000000000000004.json ', ' 0000000000000004.json', '0000000000000004.json\n',
      '0000000000000004.JSON', '0000000000000000.json', '9999999999999999.json', '%2e%2e%2f0000000000000004.json', '..json',
    ];
    for (const k of viaApi) await store.put(jp + k, Buffer.from(JSON.stringify(record(1, 4))));
    await placeRaw(`${jp}0000000000000004.json.bak`, JSON.stringify(record(1, 4)));
    await placeRaw(`${jp}0000000000000004\t.json`, JSON.stringify(record(1, 4)));
    await placeRaw(`${jp}\\0000000000000004.json`, JSON.stringify(record(1, 4)));
    wrap.injected = [`${jp}../../x`, `${jp}../../../../etc/passwd`, `${jp}0000000000000004.json\0`, `${jp}\0`, `${jp}0000000000000004.json/../../x`];

    const items = await collect(b.listRecords(g(1), 0));
    assert.deepEqual(describeItems(items), ['1', '2', '3']);
    for (const key of wrap.keysRead) {
      assert.match(key, /^tl\/test\/g\d+\/gen\/1\/journal\/[0-9]{16}\.json$/, `read a key outside the layout: ${JSON.stringify(key)}`);
    }
    const warn = lines.find((l) => l['msg'] === 'ignored keys that are not in the bucket layout');
    assert.ok(warn, 'hostile keys are logged');
    assert.equal(warn['count'], viaApi.length + 3 + wrap.injected.length);
  });

  it('lists generations ascending, ignoring hostile keys', async () => {
    const { log, lines } = logCollector();
    const wrap = new WrappedStore(store);
    const b = fresh({ log, wrap });
    assert.deepEqual(await b.listGenerations(), []);
    const jw = new JournalWriter(b, { generation: g(1), writer: 'host-a', head: null });
    for (let i = 0; i < 3; i++) await jw.publish({ container: 'web', digest: asDigest('ab'.repeat(32)), size: 1, kind: 'delta', counts: { files: 1, deletions: 0, bytes: 1 }, firstWriteAt: new Date() });
    await b.writeRecord(record(2, 1)); // records, no head yet
    await b.writeHead({ version: 1, generation: g(10), seq: 0 as Seq, writer: 'host-b', updatedAt: new Date().toISOString(), containers: {} });
    const gp = b.layout.generationsPrefix;
    for (const k of ['01/head.json', '-1/head.json', '1e3/head.json', '3/other.json', '99999999999999999/head.json', '4/journal/x.json', '5/head.json.tmp', '6']) {
      await store.put(gp + k, Buffer.from('{}'));
    }
    wrap.injected = [`${gp}../head.json`, `${gp}7/../../head.json`, `${gp}8\0/head.json`];
    assert.deepEqual(await b.listGenerations(), [1, 2, 10]);
    assert.ok(lines.some((l) => l['msg'] === 'ignored keys that are not in the bucket layout' && l['count'] === 11));
  });

  it('reads the head with a conditional GET', async () => {
    const b = fresh();
    assert.deepEqual(await b.readHead(g(1)), { status: 'missing' });
    const head = { version: 1 as const, generation: g(1), seq: 3 as Seq, writer: 'host-a', updatedAt: new Date().toISOString(), containers: { web: 3 as Seq } };
    await b.writeHead(head);
    const first = await b.readHead(g(1));
    assert.equal(first.status, 'ok');
    if (first.status !== 'ok') return;
    assert.deepEqual(first.head, head);
    assert.deepEqual(await b.readHead(g(1), first.etag), { status: 'unchanged' });
    await b.writeHead({ ...head, seq: 4 as Seq });
    const second = await b.readHead(g(1), first.etag);
    assert.ok(second.status === 'ok' && second.head.seq === 4);
    // Refused, whether signed or not: a hostile container name, another generation's head, no signature.
    await store.put(b.headKey(g(2)), sealed(b, 'head', b.headKey(g(2)), { ...head, generation: 2, containers: { '-bad': 1 } }));
    assert.match(refusedReason(await b.readHead(g(2))), /does not parse: containers/);
    await store.put(b.headKey(g(2)), Buffer.from(JSON.stringify({ ...head, generation: 2 })));
    assert.match(refusedReason(await b.readHead(g(2))), /not signed/);
    // JSON.parse makes "__proto__" an own key; it must not reach the parsed head's prototype.
    const polluted = JSON.parse(JSON.stringify({ ...head, generation: 4 }).replace('"containers":{', '"containers":{"__proto__":{"polluted":1},')) as object;
    await store.put(b.headKey(g(4)), sealed(b, 'head', b.headKey(g(4)), polluted));
    const proto = await b.readHead(g(4));
    assert.ok(proto.status === 'refused' || (proto.status === 'ok' && Object.getPrototypeOf(proto.head.containers) === Object.prototype && !('polluted' in proto.head.containers)));
    await store.put(b.headKey(g(3)), sealed(b, 'head', b.headKey(g(3)), head)); // names generation 1
    assert.match(refusedReason(await b.readHead(g(3))), /names generation 1, not its key's 3/);
    const refused = b.signatureStatus().refused.recent.map((r) => r.key);
    assert.ok(refused.includes(b.headKey(g(2))) && refused.includes(b.headKey(g(3))), JSON.stringify(refused));
  });

  it('stores and lists specs, ignoring hostile names', async () => {
    const b = fresh();
    await b.putSpec('web', { image: 'nginx', env: ['A=1'] });
    await b.putSpec('b.c-1', { image: 'x' });
    // A name that another one starts: the embedded server lists web/ before web-proxy/ (its directory order).
    await b.putSpec('web-proxy', { image: 'y' });
    assert.deepEqual(await b.getSpec('web'), { image: 'nginx', env: ['A=1'] });
    assert.equal(await b.getSpec('none'), undefined);
    const sp = b.layout.specsPrefix;
    for (const k of ['-bad/spec.json', 'a/b/spec.json', 'x/spec.json.bak', 'y/other.json', '.hidden/spec.json']) await store.put(sp + k, Buffer.from('{}'));
    assert.deepEqual(await b.listSpecNames(), ['b.c-1', 'web', 'web-proxy']);
    await store.put(b.specKey('broken'), Buffer.from('{'));
    await assert.rejects(b.getSpec('broken'), { code: 'SPEC_INVALID' });
  });

  it('spec.json: a put held up past the new owner\'s is refused, the owner\'s put wins a race, the same bytes are not put again', async () => {
    // Two writers of one group (two hosts' pushers): the old owner's put is conditional on what it read before its
    // owner check, so one that lands after the new owner's put (held up in the network, retried after a lost answer)
    // fails its condition; its next round's owner check then says it is fenced.
    const group = `g${++groupNo}`;
    const oldWrap = new WrappedStore(store);
    const newWrap = new WrappedStore(store);
    const oldOwner = new Bucket(oldWrap, { signatures: testSignatures(), prefix: 'tl/test', group });
    const newOwner = new Bucket(newWrap, { signatures: testSignatures(), prefix: 'tl/test', group });
    await oldOwner.putSpec('web', { name: 'web', from: 'old', v: 1 });
    let oldChecks = 0;
    const fenced = new Error('fenced: generation 2 owns the group');
    await assert.rejects(oldOwner.putSpec('web', { name: 'web', from: 'old', v: 2 }, {
      confirmOwner: async () => {
        // The old owner's check passed before the successor claimed; the new owner's put lands before its own.
        if (++oldChecks === 1) return newOwner.putSpec('web', { name: 'web', from: 'new' });
        throw fenced;
      },
    }), (err) => err === fenced);
    assert.equal(oldChecks, 2);
    assert.deepEqual(await newOwner.getSpec('web'), { name: 'web', from: 'new' });
    assert.deepEqual(oldWrap.puts, [oldOwner.specKey('web')], 'only the old owner\'s first put (from before the race) landed');

    // The other order: a put of the old owner lands between the new owner's read and its put; the new owner reads
    // again, checks again, and replaces it.
    let newChecks = 0;
    await newOwner.putSpec('web', { name: 'web', from: 'new', v: 2 }, {
      confirmOwner: async () => {
        if (++newChecks === 1) await store.put(oldOwner.specKey('web'), Buffer.from(JSON.stringify({ late: true })));
      },
    });
    assert.equal(newChecks, 2);
    assert.deepEqual(await oldOwner.getSpec('web'), { name: 'web', from: 'new', v: 2 });

    // The same spec again (a restart of the pusher): read, not put, and no owner check is needed.
    const puts = newWrap.puts.length;
    await newOwner.putSpec('web', { name: 'web', from: 'new', v: 2 }, { confirmOwner: () => Promise.reject(new Error('not asked')) });
    assert.equal(newWrap.puts.length, puts);

    // A writer that replaces it on every round: a clear error naming the key, after a bounded number of rounds.
    let rounds = 0;
    await assert.rejects(newOwner.putSpec('web', { name: 'web', from: 'new', v: 3 }, {
      confirmOwner: async () => {
        rounds++;
        await store.put(newOwner.specKey('web'), Buffer.from(JSON.stringify({ round: rounds })));
      },
    }), (err: Error) => /changed between its read and the put 4 times/.test(err.message) && err.message.includes(newOwner.specKey('web')));
    assert.equal(rounds, 4);
  });

  it('publishes concurrent commits in strict order: record N, head N, then record N+1', async () => {
    const wrap = new WrappedStore(store);
    const b = fresh({ wrap });
    const jw = new JournalWriter(b, { generation: g(1), writer: 'host-a', head: null });
    const names = ['web', 'dns', 'fw'];
    const calls = Array.from({ length: 30 }, (_, i) => ({ container: names[i % 3] ?? 'web', i }));
    const results = await Promise.all(
      calls.map(({ container, i }) =>
        jw.publish({ container, digest: asDigest(sha(Buffer.from(String(i)))), size: i, kind: i < 3 ? 'full' : 'delta', counts: { files: i, deletions: 0, bytes: i }, firstWriteAt: new Date(1000 + i) }),
      ),
    );
    assert.deepEqual(results.map((r) => r.seq), calls.map((_, i) => i + 1));
    for (const [i, r] of results.entries()) {
      assert.equal(r.size, i);
      assert.equal(r.parentSeq, i < 3 ? 0 : i - 2);
    }
    const expectedPuts = results.flatMap((r) => [b.journalKey(g(1), r.seq), b.headKey(g(1))]);
    assert.deepEqual(wrap.puts, expectedPuts);
    assert.equal(jw.lastSeq, 30);
    assert.equal(jw.lastSeqOf('fw'), 30);
    assert.equal(jw.lastSeqOf('nope'), 0);
    const head = await b.readHead(g(1));
    assert.ok(head.status === 'ok');
    assert.deepEqual(head.head.containers, { web: 28, dns: 29, fw: 30 });
    const listed = await collect(b.listRecords(g(1), 0));
    assert.deepEqual(listed.map((i) => ('record' in i ? i.record : null)), results);
  });

  it('recovers a head that lags the journal, and the writer continues after it', async () => {
    const wrap = new WrappedStore(store);
    const { log, lines } = logCollector();
    const b = fresh({ wrap });
    const jw = new JournalWriter(b, { generation: g(2), writer: 'host-a', head: null, log });
    const input = (container: string) => ({ container, digest: asDigest('ab'.repeat(32)), size: 1, kind: 'delta' as const, counts: { files: 1, deletions: 0, bytes: 1 }, firstWriteAt: new Date() });
    await jw.publish(input('web'));
    await jw.publish(input('dns'));
    // The head writes fail from here on: a crash between record and head looks the same from the bucket.
    wrap.beforePut = (key) => {
      if (key.endsWith('/head.json')) throw new Error('injected head failure');
    };
    await jw.publish(input('web'));
    await jw.publish(input('fw'));
    assert.equal(jw.headDirty, true);
    assert.ok(lines.some((l) => l['msg'] === 'head write failed; retrying in the background'));
    const lagging = await b.readHead(g(2));
    assert.ok(lagging.status === 'ok' && lagging.head.seq === 2);

    wrap.beforePut = undefined;
    const head = await recoverHead(b, g(2));
    assert.ok(head !== null);
    assert.equal(head.seq, 4);
    assert.equal(head.writer, 'host-a');
    assert.deepEqual(head.containers, { web: 3, dns: 2, fw: 4 });
    const stored = await b.readHead(g(2));
    assert.ok(stored.status === 'ok' && stored.head.seq === 4);

    const resumed = new JournalWriter(b, { generation: g(2), writer: 'host-a', head });
    const rec = await resumed.publish(input('web'));
    assert.equal(rec.seq, 5);
    assert.equal(rec.parentSeq, 3);
    assert.equal(await recoverHead(b, g(9)), null);
  });

  it('recovers past a gap and garbage without a head, never reusing a seq', async () => {
    const b = fresh();
    await b.writeRecord({ ...record(3, 1), writer: 'host-z' });
    await b.writeRecord(record(3, 2));
    await store.put(b.journalKey(g(3), 4 as Seq), Buffer.from('garbage'));
    const head = await recoverHead(b, g(3));
    assert.ok(head !== null);
    assert.equal(head.seq, 4);
    assert.equal(head.writer, 'host-z');
    assert.deepEqual(head.containers, { web: 2 });
  });
});
