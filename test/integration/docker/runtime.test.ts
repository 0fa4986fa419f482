// DockerRuntime against two real engines started by the harness: a "primary" (A) and a "standby" (B).
import { after, before, describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Parser } from 'tar';
import {
  DockerRuntime,
  ImageMissingError,
  LayerResolveError,
  TwinRefusedError,
  inspectSchema,
  specDigest,
  layersFromGraphDriver,
  twinSpecSchema,
  verifyUpperDirOnDisk,
} from '../../../src/docker/index.js';
import type { TwinSpec } from '../../../src/docker/index.js';
import { copyImage, importBusyboxImage } from '../../../src/lab/busybox-image.js';
import { dockerCli, startEngine, stopAllEngines } from '../../../src/lab/engine.js';
import type { Engine } from '../../../src/lab/engine.js';
import { startDockerCallCounter } from '../../support/docker-calls.js';

const LABEL = 'twinlayer.enable';
const suffix = randomBytes(3).toString('hex');
const TAG = `twl-bb-${suffix}:1`;

async function inspectJson(engine: Engine, name: string): Promise<ReturnType<typeof inspectSchema.parse>> {
  const out = JSON.parse(await dockerCli(engine, ['inspect', name])) as unknown[];
  return inspectSchema.parse(out[0]);
}

async function tarPaths(stream: NodeJS.ReadableStream): Promise<Map<string, string>> {
  const entries = new Map<string, string>();
  const parser = new Parser({
    onReadEntry: (entry) => {
      const chunks: Buffer[] = [];
      entry.on('data', (c: Buffer) => chunks.push(c));
      entry.on('end', () => entries.set(entry.path.replace(/^\.?\//, ''), Buffer.concat(chunks).toString('utf8')));
    },
  });
  await new Promise<void>((resolve, reject) => {
    parser.on('end', () => resolve());
    parser.on('error', reject);
    stream.on('error', reject);
    stream.pipe(parser);
  });
  return entries;
}

describe('DockerRuntime on real engines', { timeout: 120_000 }, () => {
  let a: Engine;
  let b: Engine;
  let rtA: DockerRuntime;
  let rtB: DockerRuntime;
  let imageId = '';
  let spec: TwinSpec;

  before(async () => {
    [a, b] = await Promise.all([startEngine({ name: 'rt-a' }), startEngine({ name: 'rt-b' })]);
    rtA = new DockerRuntime({ socketPath: a.socketPath });
    rtB = new DockerRuntime({ socketPath: b.socketPath, mountInfoPath: b.mountInfoPath });
    imageId = await importBusyboxImage(a.socketPath, TAG);
    await dockerCli(a, ['run', '-d', '--name', 'web', '--network', 'none', '-l', `${LABEL}=true`, '-l', 'com.example.role=web',
      '-e', 'FOO=bar', '-p', '8080:80', TAG, 'sh', '-c', 'exec sleep 3600']);
    await dockerCli(a, ['run', '-d', '--name', 'plain', '--network', 'none', TAG, 'sh', '-c', 'exec sleep 3600']);
  });

  after(async () => {
    await stopAllEngines();
  });

  it('checkEngine accepts overlay2 with native diff and reports the data root', async () => {
    const facts = await rtA.checkEngine();
    assert.equal(facts.driver, 'overlay2');
    assert.equal(facts.dataRoot, a.dataRoot);
    assert.match(facts.serverVersion, /^\d+\.\d+/);
  });

  it('listProtected finds only the labelled container, with an upper dir under the data root', async () => {
    const list = await rtA.listProtected(LABEL);
    assert.deepEqual(list.map((c) => c.name), ['web']);
    const web = list[0]!;
    assert.equal(web.running, true);
    assert.equal(web.imageId, imageId);
    assert.equal(web.imageRef, TAG);
    assert.ok(web.layers.upperDir.startsWith(`${a.dataRoot}/overlay2/`), web.layers.upperDir);
    assert.ok(web.layers.lowerDirs.length >= 1);
    assert.deepEqual(await rtA.resolveLayers('web'), web.layers);
  });

  it('listProtectedChanges inspects only what is new or replaced: a known name and id is only listed', async () => {
    const counter = await startDockerCallCounter(join(a.dataRoot, '..', `calls-${suffix}.sock`), a.socketPath);
    try {
      const rt = new DockerRuntime({ socketPath: counter.path });
      const [web] = await rt.listProtected(LABEL);
      assert.ok(web);
      counter.reset();
      const known = await rt.listProtectedChanges(LABEL, { known: new Map([['web', web.id]]) });
      assert.deepEqual(known, { containers: [], kept: ['web'] });
      assert.equal(counter.counts().get('GET /containers/*/json') ?? 0, 0, JSON.stringify(Object.fromEntries(counter.counts())));
      assert.equal(counter.total(), 1, 'one listing');
      // Another id under that name (a `docker rm` + `docker run`): resolved again.
      const replaced = await rt.listProtectedChanges(LABEL, { known: new Map([['web', 'f'.repeat(64)]]) });
      assert.deepEqual(replaced.containers.map((c) => c.id), [web.id]);
      assert.deepEqual(replaced.kept, []);
    } finally {
      await counter.close();
    }
  });

  it('captureSpec round-trips through twinSpecSchema', async () => {
    spec = await rtA.captureSpec('web');
    assert.deepEqual(twinSpecSchema.parse(JSON.parse(JSON.stringify(spec))), spec);
    assert.equal(spec.name, 'web');
    assert.equal(spec.imageId, imageId);
    assert.equal(spec.image, TAG);
    assert.deepEqual(spec.cmd, ['sh', '-c', 'exec sleep 3600']);
    assert.ok(spec.env.includes('FOO=bar'));
    assert.deepEqual(spec.labels, { [LABEL]: 'true', 'com.example.role': 'web' });
    assert.deepEqual(spec.portBindings, { '80/tcp': [{ hostIp: '', hostPort: '8080' }] });
    assert.equal(spec.networkMode, 'none');
  });

  it('a write made through docker exec appears in the upper dir', async () => {
    const { upperDir } = await rtA.resolveLayers('web');
    await dockerCli(a, ['exec', 'web', 'sh', '-c', 'echo changed > /etc/app/a.conf && mkdir -p /srv/new && echo n > /srv/new/f']);
    assert.equal(await readFile(join(upperDir, 'etc/app/a.conf'), 'utf8'), 'changed\n');
    assert.equal(await readFile(join(upperDir, 'srv/new/f'), 'utf8'), 'n\n');
  });

  it('exportContainer streams the merged filesystem', async () => {
    const files = await tarPaths(await rtA.exportContainer('web'));
    assert.equal(files.get('etc/app/a.conf'), 'changed\n');
    assert.equal(files.get('etc/app/b.conf'), 'beta=2\n');
    assert.ok(files.has('bin/busybox'));
  });

  it('the same image on a second engine: import gives a new id, save/load keeps it', async (t) => {
    // docker import records the import time in the image config, so the same tar imported twice gets two ids.
    const reimported = await importBusyboxImage(b.socketPath, `twl-other-${suffix}:1`);
    t.diagnostic(`import on A: ${imageId}; import of an identical rootfs on B: ${reimported}`);
    assert.equal(await rtB.imagePresent(imageId), reimported === imageId);
    assert.equal(await copyImage(a.socketPath, b.socketPath, TAG), imageId);
    assert.equal(await rtB.imagePresent(imageId), true);
    assert.equal(await rtB.imagePresent(`sha256:${'0'.repeat(64)}`), false);
  });

  it('ensureTwin creates a stopped, labelled full replica with restart policy no; again is a no-op', async () => {
    assert.deepEqual(await rtB.twinState('web'), { state: 'absent' });
    const state = await rtB.ensureTwin(spec, { group: 'g1', trusted: false });
    assert.equal(state.state, 'stopped');
    assert.equal(state.isTwin, true);
    assert.equal(state.mounted, false);
    assert.equal(state.imageId, imageId);
    assert.ok(state.layers.upperDir.startsWith(`${b.dataRoot}/overlay2/`));

    const inspect = await inspectJson(b, 'web');
    assert.equal(inspect.State.Running, false);
    assert.equal(inspect.HostConfig.RestartPolicy?.Name, 'no');
    assert.deepEqual(inspect.Config.Labels, {
      'twinlayer.twin': 'true',
      'twinlayer.enable': 'true',
      'twinlayer.group': 'g1',
      'twinlayer.spec-digest': specDigest(spec),
      'com.example.role': 'web',
    });
    assert.equal(state.specDigest, specDigest(spec));
    assert.deepEqual(await rtB.listTwinNames('g1'), ['web']);
    assert.deepEqual(await rtB.listTwinNames('other'), [], 'the twins of another group are not ours');
    assert.ok(inspect.Config.Env?.includes('FOO=bar'));
    assert.deepEqual(inspect.Config.Cmd, spec.cmd);
    assert.equal(inspect.HostConfig.NetworkMode, 'none');

    const again = await rtB.ensureTwin(spec, { trusted: false });
    assert.ok(again.state !== 'absent');
    assert.equal(again.id, state.id);
    const all = (await dockerCli(b, ['ps', '-aq', '--no-trunc'])).trim().split('\n');
    assert.deepEqual(all, [state.id]);
    // A twin carries the opt-in label, but only the agent's role makes it protected.
    assert.deepEqual(await rtB.listProtected(LABEL), []);
    assert.deepEqual((await rtB.listProtected(LABEL, { includeTwins: true })).map((c) => [c.name, c.isTwin]), [['web', true]]);
    // Promoted, it gets a restart policy back; demoted, `no` again.
    await rtB.setRestartPolicy('web', { name: 'on-failure', maximumRetryCount: 3 });
    assert.deepEqual(await rtB.restartPolicyOf('web'), { name: 'on-failure', maximumRetryCount: 3 });
    await rtB.setRestartPolicy('web', { name: 'no', maximumRetryCount: 0 });
    assert.equal((await inspectJson(b, 'web')).HostConfig.RestartPolicy?.Name, 'no');
  });

  it('ensureTwin refuses a same-named non-twin, a twin of another image, and a missing image', async () => {
    await dockerCli(b, ['create', '--name', 'imposter', '--network', 'none', TAG, 'sh']);
    await assert.rejects(rtB.ensureTwin({ ...spec, name: 'imposter' }, { trusted: false }), (err: unknown) => {
      assert.ok(err instanceof TwinRefusedError);
      assert.match(err.message, /exists and is not a twin/);
      assert.equal(err.context.container, 'imposter');
      return true;
    });
    await dockerCli(b, ['create', '--name', 'oldtwin', '--network', 'none', '-l', 'twinlayer.twin=true', `twl-other-${suffix}:1`, 'sh']);
    await assert.rejects(rtB.ensureTwin({ ...spec, name: 'oldtwin' }, { trusted: false }), (err: unknown) => {
      assert.ok(err instanceof TwinRefusedError);
      assert.match(err.message, /image .* differs from the primary's/);
      return true;
    });
    const missing = `sha256:${'1'.repeat(64)}`;
    // Neither its id nor its identity (which would find the image under another id) names an image of B.
    await assert.rejects(rtB.ensureTwin({ ...spec, name: 'noimage', imageId: missing, imageIdentity: { configDigest: missing, diffIds: [] } }, { trusted: false }), (err: unknown) => {
      assert.ok(err instanceof ImageMissingError);
      assert.match(err.message, /is not present/);
      return true;
    });
    assert.deepEqual(await rtB.twinState('noimage'), { state: 'absent' });
  });

  it('startContainers starts 5 twins with concurrency 3; twinState shows them running and mounted', async () => {
    const names = [0, 1, 2, 3, 4].map((i) => `twin-${i}`);
    for (const name of names) {
      const s = await rtB.ensureTwin({ ...spec, name }, { trusted: false });
      assert.ok(s.state === 'stopped' && !s.mounted, name);
    }
    const results = await rtB.startContainers(names, 3);
    assert.deepEqual(results.map((r) => r.name), names);
    for (const r of results) {
      assert.equal(r.ok, true, `${r.name}: ${r.error ?? ''}`);
      assert.ok(r.ms >= 0);
    }
    for (const name of names) {
      const s = await rtB.twinState(name);
      assert.ok(s.state === 'running', `${name} is ${s.state}`);
      assert.equal(s.mounted, true, `${name} merged dir mounted`);
      assert.equal(s.isTwin, true);
    }
    const [again, missing] = await rtB.startContainers(['twin-0', 'nope'], 2);
    assert.deepEqual({ ok: again?.ok, alreadyRunning: again?.alreadyRunning }, { ok: true, alreadyRunning: true });
    assert.equal(missing?.ok, false);
    assert.match(missing?.error ?? '', /no such container/);
    await rtB.stopContainer('twin-4', 1);
    const stopped = await rtB.twinState('twin-4');
    assert.ok(stopped.state === 'stopped' && !stopped.mounted);
  });

  it('resolveLayers refuses an upper dir that is a symlink or outside the data root (crafted GraphDriver data)', async () => {
    const inspect = await inspectJson(a, 'web');
    const data = inspect.GraphDriver.Data ?? {};
    const ctx = { container: 'web' };
    // A symlink inside <dataRoot>/overlay2 pointing at the real upper dir passes the lexical check and is refused on disk.
    const fake = join(a.dataRoot, 'overlay2', `twl-fake-${suffix}`);
    await mkdir(fake);
    try {
      await symlink(data['UpperDir']!, join(fake, 'diff'));
      const layers = layersFromGraphDriver({ Name: 'overlay2', Data: { ...data, UpperDir: join(fake, 'diff') } }, a.dataRoot, ctx);
      await assert.rejects(verifyUpperDirOnDisk(layers.upperDir, ctx), (err: unknown) => err instanceof LayerResolveError && /is a symlink/.test(err.message));
    } finally {
      await rm(fake, { recursive: true, force: true });
    }
    assert.throws(() => layersFromGraphDriver({ Name: 'overlay2', Data: { ...data, UpperDir: '/etc' } }, a.dataRoot, ctx), LayerResolveError);
    assert.throws(() => layersFromGraphDriver({ Name: 'overlay2', Data: { ...data, UpperDir: `${a.dataRoot}/overlay2/../../x` } }, a.dataRoot, ctx), LayerResolveError);
    await assert.rejects(rtA.resolveLayers('no-such-container'), /container not found container=no-such-container/);
  });

  // Last: it empties engine B.
  it('removeAllContainers force-removes every container of the engine, running or stopped, twin or not', async () => {
    await dockerCli(b, ['run', '-d', '--name', `plain-${suffix}`, '--network', 'none', TAG, 'sh', '-c', 'exec sleep 3600']);
    const states = (await dockerCli(b, ['ps', '-a', '--format', '{{.State}}'])).trim().split('\n');
    assert.ok(states.includes('running') && states.includes('created'), `expected running and created containers on B, got ${states.join(',')}`);
    assert.deepEqual(await rtB.removeAllContainers(), []);
    assert.equal((await dockerCli(b, ['ps', '-aq'])).trim(), '');
    assert.deepEqual(await rtB.removeAllContainers(), [], 'an empty engine is fine');
  });
});
