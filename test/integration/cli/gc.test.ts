// `twinlayer gc`: the real CLI process against s3rver holding a history signed with the group's keys: an old
// generation, records on both sides of the horizon, a record no trusted key signed. --dry-run deletes nothing and says
// what would go; the real run deletes exactly that (blobs just written stay for their grace period); --json parses.
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GroupKeys } from '../../../src/lab/group-keys.js';
import { silentLogger } from '../../../src/log/logger.js';
import { S3RVER_CREDENTIALS } from '../../../src/s3server/index.js';
import { asDigest, Bucket, Signatures, type CommitRecord, type Digest, type Generation, type GcReport, type Seq, type S3BlobStore } from '../../../src/store/index.js';
import { testS3Store, withS3, type TestS3 } from '../../support/s3.js';
import { spawnTwinlayer } from '../../support/twinlayer.js';

const PREFIX = 'tl/gc';
const GROUP = 'g1';
const H = 3600_000;
const g = (n: number): Generation => n as Generation;
const sha = (s: string): Digest => asDigest(createHash('sha256').update(s).digest('hex'));

describe('twinlayer gc', { timeout: 120_000 }, () => {
  let dir = '';
  let s3: TestS3;
  let store: S3BlobStore;
  let env: Record<string, string>;
  let a: Bucket;
  const now = Date.now();

  async function gc(args: string[]): Promise<{ code: number | string; out: string; stdout: string }> {
    const p = spawnTwinlayer(['gc', ...args], env);
    const stdout: string[] = [];
    p.child.stdout?.on('data', (b: Buffer) => stdout.push(b.toString('utf8')));
    const timer = setTimeout(() => void p.kill('SIGKILL'), 60_000);
    const code = await p.exited;
    clearTimeout(timer);
    await new Promise((resolve) => setImmediate(resolve));
    return { code, out: p.lines.join('\n'), stdout: stdout.join('') };
  }

  async function commit(gen: number, seq: number, container: string, kind: 'full' | 'delta', hoursAgo: number): Promise<void> {
    const body = `${gen}/${seq}`;
    const f = join(dir, `blob-${gen}-${seq}`);
    await writeFile(f, body);
    await a.uploadBlob(f, sha(body));
    const at = new Date(now - hoursAgo * H).toISOString();
    const rec: CommitRecord = {
      version: 1, seq: seq as Seq, parentSeq: 0 as Seq, generation: g(gen), container, digest: sha(body), size: body.length, kind,
      counts: { files: 1, deletions: 0, bytes: body.length }, firstWriteAt: at, publishedAt: at, writer: 'host-a',
    };
    await a.writeRecord(rec);
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tl-gc-cli-'));
    const keys = await GroupKeys.create(join(dir, 'keys'), ['host-a']);
    s3 = await withS3();
    store = testS3Store(s3);
    a = new Bucket(store, { prefix: PREFIX, group: GROUP, log: silentLogger, signatures: keys.signatures('host-a') });
    const claim = async (n: number, hoursAgo: number): Promise<void> => {
      await a.claimGeneration({ version: 1, generation: g(n), host: 'host-a', claimedAt: new Date(now - hoursAgo * H).toISOString(), from: { generation: g(n - 1), containers: {} } });
    };
    // Generation 1, superseded two days ago: goes whole but for its claim.
    await claim(1, 96);
    await commit(1, 1, 'web', 'full', 95);
    await commit(1, 2, 'web', 'delta', 90);
    await a.writeHead({ version: 1, generation: g(1), seq: 2 as Seq, writer: 'host-a', updatedAt: new Date(now - 90 * H).toISOString(), containers: { web: 2 as Seq } });
    // Generation 2: web full 50 h ago (goes), delta 40 h (goes), full 30 h (the base of the window), delta 1 h.
    await claim(2, 48);
    await commit(2, 1, 'web', 'full', 47);
    await commit(2, 2, 'web', 'delta', 40);
    await commit(2, 3, 'web', 'full', 30);
    await commit(2, 5, 'web', 'delta', 1);
    // Seq 4: written by someone without a key: refused, left for an operator.
    const unsigned = new Bucket(store, { prefix: PREFIX, group: GROUP, log: silentLogger, signatures: new Signatures({ signer: null, trusted: keys.trusted, acceptUnsigned: true }) });
    await unsigned.writeRecord({ version: 1, seq: 4 as Seq, parentSeq: 3 as Seq, generation: g(2), container: 'web', digest: sha('x'), size: 1, kind: 'delta', counts: { files: 1, deletions: 0, bytes: 1 }, firstWriteAt: new Date(now).toISOString(), publishedAt: new Date(now - 35 * H).toISOString(), writer: 'host-a' });
    await a.writeHead({ version: 1, generation: g(2), seq: 5 as Seq, writer: 'host-a', updatedAt: new Date(now - H).toISOString(), containers: { web: 5 as Seq } });
    env = {
      AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
      TWINLAYER_ENDPOINT: s3.endpoint, TWINLAYER_BUCKET: s3.bucket, TWINLAYER_PATH_STYLE: 'true', TWINLAYER_PREFIX: PREFIX, TWINLAYER_GROUP: GROUP,
      TWINLAYER_STATE_DIR: join(dir, 'state'), TWINLAYER_HOST_ID: 'host-c', TWINLAYER_TRUSTED_KEYS: keys.lines.join(','),
    };
  });
  after(async () => {
    store?.destroy();
    await s3?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const keysNow = async (): Promise<string[]> => {
    const out: string[] = [];
    for await (const k of store.list(`${PREFIX}/${GROUP}/`)) out.push(k.slice(`${PREFIX}/${GROUP}/`.length));
    return out.sort();
  };

  it('--dry-run deletes nothing and says what would go', async () => {
    const before = await keysNow();
    const r = await gc(['--dry-run']);
    assert.equal(r.code, 0, r.out);
    assert.match(r.stdout, /^would delete from .*tl\/gc\/g1 \(commits before .*; 2 records kept\):/);
    assert.match(r.stdout, /record\s+2\s/);
    assert.match(r.stdout, /generation\s+3\s/);
    assert.match(r.stdout, /journal\/0000000000000004\.json is refused/);
    assert.deepEqual(await keysNow(), before);
  });

  it('deletes the old records and generation, keeps the window, the claims and (within their grace) the blobs', async () => {
    const r = await gc(['--json']);
    assert.equal(r.code, 0, r.out);
    const report = JSON.parse(r.stdout) as GcReport;
    assert.equal(report.dryRun, false);
    assert.equal(report.deleted.record.objects, 2);
    assert.equal(report.deleted.generation.objects, 3);
    assert.equal(report.deleted.blob.objects, 0, 'blobs written a moment ago are within gcGraceMs');
    const left = await keysNow();
    const journal = left.filter((k) => k.startsWith('gen/'));
    assert.deepEqual(journal, ['gen/1/claim.json', 'gen/2/claim.json', 'gen/2/head.json', 'gen/2/journal/0000000000000003.json', 'gen/2/journal/0000000000000004.json', 'gen/2/journal/0000000000000005.json']);
    assert.equal(left.filter((k) => k.startsWith('blobs/')).length, 6);
    // Run again: nothing more to do.
    const again = JSON.parse((await gc(['--json'])).stdout) as GcReport;
    assert.equal(Object.values(again.deleted).reduce((n, t) => n + t.objects, 0), 0);
  });

  it('refuses flags that are not its own', async () => {
    const r = await gc(['--all']);
    assert.equal(r.code, 2);
    assert.match(r.out, /--all is a flag of `twinlayer ls` only/);
  });
});
