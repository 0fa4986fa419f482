// `twinlayer ls`: the real CLI process reads a real S3 server (s3rver) holding a history written with the group's
// keys — two generations, a release, a divergent tail, a record no trusted key signed — and shows it as an operator
// needs it, as a table and as JSON; bad arguments stop it naming what is wrong.
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GroupKeys } from '../../../src/lab/group-keys.js';
import { silentLogger } from '../../../src/log/logger.js';
import { S3RVER_CREDENTIALS } from '../../../src/s3server/index.js';
import { asDigest, Bucket, Signatures, type CommitRecord, type Generation, type Seq, type S3BlobStore } from '../../../src/store/index.js';
import { testS3Store, withS3, type TestS3 } from '../../support/s3.js';
import { spawnTwinlayer } from '../../support/twinlayer.js';
import type { ContainerListing, Overview } from '../../../src/cli/ls-format.js';

const PREFIX = 'tl/ls';
const GROUP = 'g1';
const g = (n: number): Generation => n as Generation;

function commit(gen: number, seq: number, container: string, parentSeq: number, writer: string, kind: 'full' | 'delta' = 'delta'): CommitRecord {
  return {
    version: 1, seq: seq as Seq, parentSeq: parentSeq as Seq, generation: g(gen), container, digest: asDigest(createHash('sha256').update(`${gen}/${seq}`).digest('hex')),
    size: 1000 * seq, kind, counts: { files: seq, deletions: 1, bytes: 4096 * seq }, firstWriteAt: new Date(Date.UTC(2026, 11, 6, 10, seq)).toISOString(),
    publishedAt: new Date(Date.UTC(2026, 11, 6, 10, seq, 1)).toISOString(), writer,
  };
}

describe('twinlayer ls', { timeout: 120_000 }, () => {
  let dir = '';
  let s3: TestS3;
  let store: S3BlobStore;
  let keys: GroupKeys;
  let env: Record<string, string>;

  async function ls(args: string[], extra: Record<string, string> = {}): Promise<{ code: number | string; out: string; stdout: string }> {
    const p = spawnTwinlayer(['ls', ...args], { ...env, ...extra });
    const stdout: string[] = [];
    p.child.stdout?.on('data', (b: Buffer) => stdout.push(b.toString('utf8')));
    const timer = setTimeout(() => void p.kill('SIGKILL'), 30_000);
    const code = await p.exited;
    clearTimeout(timer);
    await new Promise((resolve) => setImmediate(resolve));
    return { code, out: p.lines.join('\n'), stdout: stdout.join('') };
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tl-ls-'));
    keys = await GroupKeys.create(join(dir, 'keys'), ['host-a', 'host-b']);
    s3 = await withS3();
    store = testS3Store(s3);
    const as = (host: string | null, acceptUnsigned = false): Bucket => new Bucket(store, {
      prefix: PREFIX, group: GROUP, log: silentLogger,
      signatures: host === null ? new Signatures({ signer: null, trusted: keys.trusted, acceptUnsigned }) : keys.signatures(host),
    });
    const a = as('host-a');
    const b = as('host-b');
    // Generation 1, host-a: web 1 (full), 2, 4; db 3 (full).
    assert.deepEqual(await a.claimGeneration({ version: 1, generation: g(1), host: 'host-a', claimedAt: '2026-12-06T10:00:00.000Z', from: { generation: g(0), containers: {} } }), { won: true });
    for (const r of [commit(1, 1, 'web', 0, 'host-a', 'full'), commit(1, 2, 'web', 1, 'host-a'), commit(1, 3, 'db', 0, 'host-a', 'full'), commit(1, 4, 'web', 2, 'host-a')]) await a.writeRecord(r);
    await a.writeHead({ version: 1, generation: g(1), seq: 4 as Seq, writer: 'host-a', updatedAt: '2026-12-06T10:04:02.000Z', containers: { web: 4 as Seq, db: 3 as Seq } });
    await a.putRelease({ version: 1, generation: g(1), host: 'host-a', headSeq: 4 as Seq, headUpdatedAt: '2026-12-06T10:04:02.000Z', releasedAt: '2026-12-06T10:05:00.000Z', reason: 'left MASTER with no successor' });
    // Generation 2, host-b, promoted from generation 1 with web at 2 (seq 4 is host-a's divergent tail).
    assert.deepEqual(await b.claimGeneration({ version: 1, generation: g(2), host: 'host-b', claimedAt: '2026-12-06T10:06:00.000Z', from: { generation: g(1), containers: { web: 2 as Seq, db: 3 as Seq } } }), { won: true });
    await b.writeRecord(commit(2, 1, 'web', 0, 'host-b', 'full'));
    await b.writeHead({ version: 1, generation: g(2), seq: 3 as Seq, writer: 'host-b', updatedAt: '2026-12-06T10:08:00.000Z', containers: { web: 3 as Seq } });
    await b.writeRecord(commit(2, 3, 'web', 1, 'host-b'));
    // Seq 4 of generation 2, past its head, written by someone who holds no key: refused, shown, never taken for web's.
    await as(null, true).writeRecord(commit(2, 4, 'web', 3, 'host-b'));
    const tail = join(dir, 'tail.tar');
    await writeFile(tail, 'a divergent tail');
    await a.putDivergent({
      version: 1, host: 'host-a', generation: g(1), claimGeneration: g(2), container: 'web', fromSeq: 2 as Seq, lastShippedSeq: 4 as Seq,
      digest: asDigest(createHash('sha256').update('a divergent tail').digest('hex')), size: 16, counts: { files: 2, deletions: 0, bytes: 16 },
      savedAt: '2026-12-06T10:09:00.000Z', reason: 'demoted: host-b owns generation 2',
    }, tail);
    await a.putSpec('web', { version: 1, name: 'web' });
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

  it('without a container: the generations newest first, with owner, head and release, the containers and the tails', async () => {
    const r = await ls(['--json']);
    assert.equal(r.code, 0, r.out);
    const o = JSON.parse(r.stdout) as Overview;
    assert.equal(o.bucket, `${s3.bucket}/${PREFIX}/${GROUP}`);
    assert.deepEqual(o.generations.map((v) => [v.generation, v.owner, v.head?.seq ?? null, v.release?.host ?? null, v.from?.generation ?? null]), [[2, 'host-b', 3, null, 1], [1, 'host-a', 4, 'host-a', 0]]);
    assert.equal(o.newest, 2);
    assert.deepEqual(o.containers, { web: 3 });
    assert.deepEqual(o.specs, ['web']);
    assert.deepEqual(o.tails.map((t) => [t.container, t.host, t.fromSeq, t.lastShippedSeq, t.files]), [['web', 'host-a', 2, 4, 2]]);

    const human = await ls([]);
    assert.equal(human.code, 0, human.out);
    assert.match(human.stdout, /^GEN +OWNER +CLAIMED +HEAD SEQ/m);
    assert.match(human.stdout, /^2 +host-b +2026-12-06T10:06:00\.000Z +3 .*newest; promoted from generation 1$/m);
    assert.match(human.stdout, /^1 +host-a .*released by host-a at 2026-12-06T10:05:00\.000Z \(left MASTER with no successor\)$/m);
    assert.match(human.stdout, /^web +3 +yes$/m);
    assert.match(human.stdout, /^web +host-a +1 +2\.\.4 +2 files, 0 deleted, 16 B .*demoted: host-b owns generation 2$/m);
  });

  it('with a container: its commits in the newest generation that has it; a record no trusted key signed is shown as unreadable', async () => {
    const r = await ls(['web', '--json']);
    assert.equal(r.code, 0, r.out);
    const l = JSON.parse(r.stdout) as ContainerListing;
    assert.deepEqual(l.generations.map((x) => x.generation), [2]);
    const [gen2] = l.generations;
    assert.deepEqual(gen2?.commits.map((c) => [c.seq, c.kind, c.size, c.files, c.writer]), [[1, 'full', 1000, 1, 'host-b'], [3, 'delta', 3000, 3, 'host-b']]);
    assert.equal(gen2?.unreadable.length, 1);
    assert.match(gen2?.unreadable[0] ?? '', /^seq 4: /);
    assert.deepEqual(l.tails.map((t) => t.lastShippedSeq), [4]);

    const human = await ls(['web']);
    assert.equal(human.code, 0, human.out);
    assert.match(human.stdout, /^web in generation 2 \(host-b, head seq 3\): 2 commit\(s\)$/m);
    assert.match(human.stdout, /^1 +full +2026-12-06T10:01:01\.000Z +1000 B +1 +1 +0 +host-b$/m);
    assert.match(human.stdout, /unreadable record: seq 4: /);
  });

  it('--generation picks one, --all every generation; db is only in generation 1', async () => {
    const one = JSON.parse((await ls(['web', '--generation', '1', '--json'])).stdout) as ContainerListing;
    assert.deepEqual(one.generations.map((x) => [x.generation, x.commits.map((c) => c.seq)]), [[1, [1, 2, 4]]]);
    const all = JSON.parse((await ls(['--json', '--all', 'web'])).stdout) as ContainerListing;
    assert.deepEqual(all.generations.map((x) => [x.generation, x.commits.map((c) => c.seq)]), [[2, [1, 3]], [1, [1, 2, 4]]]);
    const db = JSON.parse((await ls(['db', '--json'])).stdout) as ContainerListing;
    assert.deepEqual(db.generations.map((x) => [x.generation, x.commits.map((c) => c.seq)]), [[1, [3]]]);
    const none = await ls(['nothere']);
    assert.equal(none.code, 0, none.out);
    assert.match(none.stdout, /no generation has commits of nothere/);
  });

  it('refuses bad arguments and a missing trust set-up with exit 2, naming what is wrong', async () => {
    const cases: Array<[string[], Record<string, string>, RegExp]> = [
      [['web', 'db'], {}, /ls takes at most one container name, got 2: web db/],
      [['web', '--generation', 'x'], {}, /--generation expects a generation number \(1 or more\), got "x"/],
      [['web', '--generation', '7'], {}, /generation 7 is not in .*generations there: 1, 2/],
      [['web', '--generation', '1', '--all'], {}, /--generation and --all exclude each other/],
      [['--all'], {}, /--generation and --all need a container/],
      [['--bogus'], {}, /unknown flag --bogus/],
      [[], { TWINLAYER_TRUSTED_KEYS: '' }, /no trusted keys: config key `trustedKeys`.*`twinlayer ls`/],
    ];
    for (const [args, extra, reason] of cases) {
      const r = await ls(args, extra);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.out}`);
      assert.match(r.out, reason, args.join(' '));
    }
  });

  it('text from the bucket reaches the terminal escaped: a record holding ANSI escapes shows them as \\x1b, never raw', async () => {
    // Junk past generation 1's head: the refusal quotes the bytes JSON.parse choked on.
    // A C1 CSI, a bidi override and ESC sequences, where the parse error quotes them.
    const hostile = '\u009b2J\u202eevil\x1b[2J\x1b]0;pwned\x07';
    await store.put(`${PREFIX}/${GROUP}/gen/1/journal/0000000000000005.json`, Buffer.from(hostile, 'utf8'));
    // Any control character but the output's own line ends, or the bidi override.
    const raw = /[\p{Cc}\u202e]/u;
    const human = await ls(['web', '--generation', '1']);
    assert.equal(human.code, 0, human.out);
    assert.doesNotMatch(human.stdout.replace(/\n/g, ''), raw);
    assert.match(human.stdout, /unreadable record: seq 5: .*\\x9b2J\\u\{202e\}evil\\x1b\[/);
    const json = await ls(['web', '--generation', '1', '--json']);
    assert.equal(json.code, 0, json.out);
    assert.doesNotMatch(json.stdout.replace(/\n/g, ''), raw);
    // Escaped for the terminal, the same string for a program.
    const l = JSON.parse(json.stdout) as ContainerListing;
    assert.ok(l.generations[0]?.unreadable.some((u) => u.includes('\u009b2J\u202eevil\x1b[')), JSON.stringify(l.generations[0]?.unreadable));
    await store.delete(`${PREFIX}/${GROUP}/gen/1/journal/0000000000000005.json`);
  });

  it('the other commands still refuse an operand', async () => {
    const p = spawnTwinlayer(['status', 'extra'], env);
    assert.equal(await p.exited, 2);
    assert.match(p.lines.join('\n'), /unexpected argument "extra"/);
  });
});
