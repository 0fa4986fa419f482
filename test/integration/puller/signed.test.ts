// A real `twinlayer pull` (its own process, a real dockerd, the embedded S3 server) in a bucket that a writer without
// a trusted key has also written to (issue 8 item 3): a forged top generation, a spec asking for host networking as
// root, a signed spec replayed under another container, and the primary's commit 2 replaced by an unsigned record
// whose changeset drops a file. The standby follows the group's generation, stages only what the primary signed,
// creates no twin from a forged spec, boots nothing forged at MASTER, and its GET /v1/status lists every refusal.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { DockerRuntime } from '../../../src/docker/index.js';
import { dockerCli, startEngine, type Engine } from '../../../src/lab/engine.js';
import { importBusyboxImage } from '../../../src/lab/busybox-image.js';
import { GroupKeys } from '../../../src/lab/group-keys.js';
import { waitFor } from '../../../src/lab/wait.js';
import { Bucket, Signatures, type Generation, type S3BlobStore, type Seq } from '../../../src/store/index.js';
import { s3Env, testS3Store, withS3, type TestS3 } from '../../support/s3.js';
import { freePort, spawnTwinlayer, type TwinlayerProcess } from '../../support/twinlayer.js';
import { file as tarFile, tarOf } from '../changeset/craft-tar.js';
import { craftRecord, gz, Primary, putBlob, twinSpec, WRITER } from './helpers.js';

const GROUP = 'signed';
const TOKEN = 'signed-pull-token-0123456789';
const TOP = Number.MAX_SAFE_INTEGER as Generation;

interface Status {
  role: string;
  generation: number | null;
  lastError: string | null;
  containers: Array<{ name: string; stagedSeq: number; latestSeq: number | null; twin: string; reason?: string }>;
  signatures: { required: boolean; signer: unknown; trusted: Array<{ keyId: string; host: string | null }>; refused: { total: number; recent: Array<{ key: string; kind: string; reason: string; count: number }> } };
}

describe('twinlayer pull: a bucket writer without a key can make the standby stage or boot nothing', { timeout: 300_000 }, () => {
  let base: string;
  let s3: TestS3;
  let store: S3BlobStore;
  let engine: Engine;
  let keys: GroupKeys;
  const procs: TwinlayerProcess[] = [];

  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'tl-psigned-'));
    s3 = await withS3();
    store = testS3Store(s3);
    engine = await startEngine({ name: 'pull-signed' });
    keys = await GroupKeys.create(join(base, 'keys'), [WRITER, 'standby']);
  });

  after(async () => {
    const errors: unknown[] = [];
    await Promise.allSettled(procs.map((p) => p.kill('SIGKILL')));
    store?.destroy();
    await engine?.stop().catch((e: unknown) => errors.push(e));
    await s3?.close().catch((e: unknown) => errors.push(e));
    if (base) await rm(base, { recursive: true, force: true });
    if (errors.length > 0) throw new AggregateError(errors, 'cleanup failed');
  });

  it('follows the signed generation, stages and boots only what the primary signed, and reports every refusal', async () => {
    const imageId = await importBusyboxImage(engine.socketPath, 'tl-busybox:signed');
    const prefix = 'twinlayer';
    const bucket = new Bucket(store, { prefix, group: GROUP, signatures: keys.signatures(WRITER) });
    // The attacker writes through the same S3 API, with no key (it would sign if it could).
    const attacker = new Bucket(store, { prefix, group: GROUP, signatures: new Signatures({ signer: null, trusted: [], acceptUnsigned: true }) });
    const primary = new Primary(bucket, join(base, 'primary'));
    const web = await primary.container('web', imageId);
    await web.commit((u) => writeFile(join(u, 'index.html'), 'v1'));
    await web.commit((u) => writeFile(join(u, 'index.html'), 'v2'));

    await attacker.writeHead({ version: 1, generation: TOP, seq: 1 as Seq, writer: WRITER, updatedAt: new Date().toISOString(), containers: { evil: 1 as Seq } });
    await attacker.claimGeneration({ version: 1, generation: TOP, host: WRITER, claimedAt: new Date().toISOString(), from: { generation: 1 as Generation, containers: {} } });
    await attacker.putSpec('evil', { ...twinSpec('evil', imageId), networkMode: 'host', user: 'root', cmd: ['sh', '-c', 'echo owned > /tmp/owned'] });
    const webSpec = await store.getBuffer(bucket.specKey('web'), 1 << 20);
    assert.ok(webSpec);
    await store.put(bucket.specKey('web2'), webSpec);
    const payload = await putBlob(store, attacker, gz(tarOf([tarFile('pwned', 'owned')])));
    await attacker.writeRecord(craftRecord({ seq: 2, parentSeq: 1, container: 'web', ...payload }));

    const port = await freePort();
    const stateDir = join(base, 'state');
    const p = spawnTwinlayer(['pull'], {
      ...s3Env(s3), TWINLAYER_GROUP: GROUP, TWINLAYER_HOST_ID: 'standby', ...keys.env('standby'),
      TWINLAYER_DOCKER_SOCKET: engine.socketPath, TWINLAYER_STATE_DIR: stateDir, TWINLAYER_POLL_INTERVAL_MS: '50',
      TWINLAYER_HOOK_LISTEN: `127.0.0.1:${port}`, TWINLAYER_HOOK_TOKEN: TOKEN, TWINLAYER_LOG_LEVEL: 'debug',
    });
    procs.push(p);
    await p.waitForLine(/hook listening/, 60_000);
    const status = async (): Promise<Status> => {
      const res = await fetch(`http://127.0.0.1:${port}/v1/status`, { headers: { authorization: `Bearer ${TOKEN}` }, signal: AbortSignal.timeout(5_000) });
      return (await res.json()) as Status;
    };
    const container = (s: Status, name: string): Status['containers'][number] | undefined => s.containers.find((c) => c.name === name);

    // Commit 1 is staged; the forged commit 2 is not, and stops the container there (a gap is never skipped).
    const blocked = await waitFor('web staged to 1, commit 2 refused, evil refused', 60_000, async () => {
      const s = await status();
      const w = container(s, 'web');
      const e = container(s, 'evil');
      return s.generation === 1 && w?.stagedSeq === 1 && w.twin === 'stopped' && e?.twin === 'refused' && /journal seq 2: record refused: not signed/.test(s.lastError ?? '') ? s : undefined;
    }, 100);
    assert.match(container(blocked, 'evil')?.reason ?? '', /spec\.json of evil: spec refused: not signed/);
    assert.match(container(blocked, 'web2')?.reason ?? '', /spec\.json of web2: spec refused: signature by key .* does not verify/);
    const runtime = new DockerRuntime({ socketPath: engine.socketPath, mountInfoPath: engine.mountInfoPath });
    const twin = await runtime.twinState('web');
    if (twin.state === 'absent') throw new Error('no twin of web');
    assert.equal(await readFile(join(twin.layers.upperDir, 'index.html'), 'utf8'), 'v1');
    await assert.rejects(readFile(join(twin.layers.upperDir, 'pwned')), { code: 'ENOENT' });

    // The primary goes on: its next full checkpoint is staged (the container waited for one).
    await web.commit((u) => writeFile(join(u, 'index.html'), 'v3'), 'full');
    await waitFor('web staged to 3', 60_000, async () => (container(await status(), 'web')?.stagedSeq === 3 ? true : undefined), 100);
    assert.equal(await readFile(join(twin.layers.upperDir, 'index.html'), 'utf8'), 'v3');
    await assert.rejects(readFile(join(twin.layers.upperDir, 'pwned')), { code: 'ENOENT' });

    // MASTER: web boots; nothing of the forged specs exists to boot.
    const res = await fetch(`http://127.0.0.1:${port}/v1/vrrp`, {
      method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'INSTANCE', name: 'VI_1', state: 'MASTER', priority: 100 }), signal: AbortSignal.timeout(30_000),
    });
    assert.equal(res.status, 200);
    const answer = (await res.json()) as { start: { containers: Array<{ name: string; ok: boolean }> } | null };
    assert.deepEqual(answer.start?.containers.map((c) => [c.name, c.ok]), [['web', true]]);
    const names = (await dockerCli(engine, ['ps', '-a', '--format', '{{.Names}}'])).trim().split('\n').sort();
    assert.deepEqual(names, ['web']);

    const final = await status();
    assert.equal(final.generation, 1, 'never followed the forged generation');
    assert.equal(final.signatures.required, true);
    assert.deepEqual(final.signatures.trusted.map((t) => t.host).sort(), ['standby', WRITER].sort());
    const refused = new Map(final.signatures.refused.recent.map((r) => [r.key, r]));
    const at = (rel: string): string => `${prefix}/${GROUP}/${rel}`;
    for (const key of [at('containers/evil/spec.json'), at('containers/web2/spec.json'), at('gen/1/journal/0000000000000002.json'), at(`gen/${TOP}/head.json`), at(`gen/${TOP}/claim.json`)]) {
      assert.ok(refused.has(key), `${key} is listed as refused: ${JSON.stringify(final.signatures.refused)}`);
    }
    assert.ok(p.lines.some((l) => /bucket object refused/.test(l) && l.includes('gen/1/journal/0000000000000002.json')), 'the refusal is logged');
    assert.equal(p.lines.filter((l) => /bucket object refused/.test(l) && l.includes('containers/evil/spec.json')).length, 1, 'logged once');
  });
});
