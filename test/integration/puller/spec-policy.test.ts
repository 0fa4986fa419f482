// The twin policy through the puller (issue 9): specs read from the embedded S3 server, twins on a real engine. A
// refused spec is named in the status of its container (twin "refused", the reason naming the field and the policy
// key) and gets no twin; the others are not held back. Privileged fields need a trusted spec; the host's policy
// refuses them anyway (host namespaces, the cgroup namespace where the engine's default is private, host ports and
// addresses, named volumes that are binds in disguise); a policy made stricter removes the stopped twin it would no
// longer create. What the standby lacks (a bind source, a network, the engine's answer) holds the twin instead: an
// existing one is kept with its staged data, none is created, the status says what is missing since when, and the
// twin is created or kept once the host has it. Right before a twin starts its bind sources are checked again.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { DEFAULT_TWIN_POLICY, DockerRuntime, twinSpecSchema } from '../../../src/docker/index.js';
import type { RunHostConfig, TwinPolicy, TwinSpec } from '../../../src/docker/index.js';
import type { Logger } from '../../../src/log/logger.js';
import type { ContainerStatus, Puller } from '../../../src/puller/index.js';
import { Bucket, Signatures, type S3BlobStore } from '../../../src/store/index.js';
import { copyImage, importBusyboxImage } from '../../../src/lab/busybox-image.js';
import { dockerCli, startEngine, type Engine } from '../../../src/lab/engine.js';
import { testS3Store, withS3, type TestS3 } from '../../support/s3.js';
import { startUnixRelay } from '../../support/unix-relay.js';
import { testKey } from '../../support/signing.js';
import { appliedSeq, bucketFor, collectingLogger, openPuller, Primary, twinSpec } from './helpers.js';

describe('puller: the twin policy, reported per container', { timeout: 300_000 }, () => {
  let base: string;
  let s3: TestS3;
  let store: S3BlobStore;
  let engine: Engine;
  let runtime: DockerRuntime;
  let imageId: string;
  const pullers: Puller[] = [];

  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'tl-policy-'));
    s3 = await withS3();
    store = testS3Store(s3);
    engine = await startEngine({ name: 'puller-pol' });
    runtime = new DockerRuntime({ socketPath: engine.socketPath, mountInfoPath: engine.mountInfoPath });
    imageId = await importBusyboxImage(engine.socketPath, 'tl-busybox:policy');
  });

  after(async () => {
    for (const p of pullers) await p.stop();
    await engine?.stop();
    store?.destroy();
    await s3?.close();
    if (base) await rm(base, { recursive: true, force: true });
  });

  const spec = (name: string, host: RunHostConfig = {}, extra: Partial<TwinSpec> = {}): TwinSpec =>
    twinSpecSchema.parse({ ...twinSpec(name, imageId), hostConfig: host, config: {}, networks: {}, unsupported: [], ...extra });

  interface GroupOptions { policy?: TwinPolicy; trustUnsignedSpecs?: boolean; unsigned?: boolean; engine?: Pick<Engine, 'socketPath' | 'mountInfoPath'>; log?: Logger }
  interface Group { puller: Puller; bucket: Bucket; open: (o: GroupOptions) => Promise<Puller> }

  async function group(name: string, specs: TwinSpec[], opts: GroupOptions): Promise<Group> {
    const g = await groupUnopened(name, specs, opts);
    return { ...g, puller: await g.open(opts) };
  }

  /** `unsigned`: the specs are written with no key and read under acceptUnsigned (a group moving to signed commits). */
  async function groupUnopened(name: string, specs: TwinSpec[], opts: GroupOptions): Promise<Omit<Group, 'puller'>> {
    const bucket = opts.unsigned === true
      ? new Bucket(store, { prefix: 'twinlayer', group: name, signatures: new Signatures({ signer: null, trusted: [testKey.trusted], acceptUnsigned: true }) })
      : bucketFor(store, name);
    for (const s of specs) await bucket.putSpec(s.name, s);
    const stateDir = join(base, name);
    await mkdir(stateDir, { recursive: true });
    const open = async (o: GroupOptions): Promise<Puller> => {
      const e = o.engine ?? engine;
      const p = await openPuller({
        socketPath: e.socketPath, mountInfoPath: e.mountInfoPath, bucket, group: name, stateDir, log: o.log ?? collectingLogger().log,
        ...(o.policy === undefined ? {} : { twinPolicy: o.policy }), ...(o.trustUnsignedSpecs === undefined ? {} : { trustUnsignedSpecs: o.trustUnsignedSpecs }),
      });
      pullers.push(p);
      await p.pollOnce();
      return p;
    };
    return { bucket, open };
  }

  async function statusOf(p: Puller, name: string): Promise<ContainerStatus> {
    const c = (await p.status()).containers.find((x) => x.name === name);
    assert.ok(c, `the status lists ${name}`);
    return c;
  }

  async function assertRefused(p: Puller, name: string, want: RegExp, rt: DockerRuntime = runtime): Promise<void> {
    const st = await statusOf(p, name);
    assert.equal(st.twin, 'refused', `${name}: ${JSON.stringify(st)}`);
    assert.match(st.reason ?? '', want);
    assert.ok(st.reason?.includes(`container=${name}`), `the reason names the container: ${st.reason}`);
    assert.equal((await rt.twinState(name)).state, 'absent', `${name}: no twin`);
  }

  /** Held for what this host lacks: no twin created, each problem in the status with the time it was first seen. */
  async function assertHeld(p: Puller, name: string, want: RegExp): Promise<ContainerStatus> {
    const st = await statusOf(p, name);
    assert.equal(st.twin, 'absent', `${name}: ${JSON.stringify(st)}`);
    assert.ok(st.hostProblems?.some((h) => want.test(h.problem) && !Number.isNaN(Date.parse(h.since))), `${name}: ${JSON.stringify(st)}`);
    assert.match(st.reason ?? '', /^held since \S+: this host lacks what the twin needs: /);
    assert.equal((await runtime.twinState(name)).state, 'absent', `${name}: no twin`);
    return st;
  }

  it('unsigned specs: privileged fields refused, the rest replicated', async () => {
    const { puller } = await group('g-unsigned', [
      spec('plain', { Memory: 64 * 1024 * 1024, Init: true }),
      spec('caps', { CapAdd: ['CAP_NET_ADMIN'] }),
      spec('hostnet', {}, { networkMode: 'host' }),
      spec('links', {}, { unsupported: ['HostConfig.Links is set (["/db:/web/db"]) and is not recreated on a twin'] }),
    ], { unsigned: true });
    assert.equal((await statusOf(puller, 'plain')).twin, 'stopped');
    assert.equal((await dockerCli(engine, ['inspect', '-f', '{{.HostConfig.Memory}} {{.HostConfig.Init}}', 'plain'])).trim(), '67108864 true');
    await assertRefused(puller, 'caps', /not signed by a key the group trusts and asks for HostConfig\.CapAdd NET_ADMIN/);
    await assertRefused(puller, 'hostnet', /asks for NetworkMode host/);
    await assertRefused(puller, 'links', /not recreated: HostConfig\.Links/);
  });

  it('trusted specs: what the policy allows is created, what it refuses and what this host lacks is reported; a stricter policy removes the stopped twin', async () => {
    const roots = join(base, 'binds');
    await mkdir(join(roots, 'data'), { recursive: true });
    const policy: TwinPolicy = { ...DEFAULT_TWIN_POLICY, allowedBindRoots: [roots] };
    const { puller, open } = await group('g-trusted', [
      spec('t-caps', { CapAdd: ['CAP_NET_ADMIN'], Binds: [`${roots}/data:/data:ro`] }),
      spec('t-sysadmin', { CapAdd: ['CAP_SYS_ADMIN'] }),
      spec('t-bind-gone', { Binds: [`${roots}/gone:/data`] }),
      spec('t-bind-out', { Binds: ['/etc:/host-etc:ro'] }),
      spec('t-ghost', {}, { networkMode: 'ghostnet' }),
      spec('t-device', { Devices: [{ PathOnHost: '/dev/twl-absent', PathInContainer: '/dev/x', CgroupPermissions: 'rwm' }] }),
    ], { policy, trustUnsignedSpecs: true });
    assert.equal((await statusOf(puller, 't-caps')).twin, 'stopped');
    assert.equal((await dockerCli(engine, ['inspect', '-f', '{{.HostConfig.CapAdd}} {{.HostConfig.Binds}}', 't-caps'])).trim(), `[CAP_NET_ADMIN] [${roots}/data:/data:ro]`);
    await assertRefused(puller, 't-sysadmin', /host policy refuses HostConfig\.CapAdd SYS_ADMIN \(allowedCapabilities: NET_ADMIN, NET_RAW, NET_BIND_SERVICE, NET_BROADCAST\)/);
    // Docker itself would have created the missing directory and mounted it empty: held until it exists.
    await assertHeld(puller, 't-bind-gone', new RegExp(`^bind-mount source ${roots}/gone does not exist on this host \\(ENOENT\\)$`));
    await assertRefused(puller, 't-bind-out', /host policy refuses HostConfig\.Binds\/Mounts \/etc \(allowedBindRoots: /);
    await assertHeld(puller, 't-ghost', /^network ghostnet does not exist on this host$/);
    await assertRefused(puller, 't-device', /host policy refuses HostConfig\.Devices \/dev\/twl-absent/);

    // The operator tightens the policy: the stopped twin it would no longer create goes, and the status says why.
    await puller.stop();
    pullers.splice(pullers.indexOf(puller), 1);
    const strict = await open({ policy: { ...policy, allowedCapabilities: [] }, trustUnsignedSpecs: true });
    await assertRefused(strict, 't-caps', /host policy refuses HostConfig\.CapAdd NET_ADMIN \(allowedCapabilities: none\)/);
  });

  it('each new host-side gate refuses with a reason naming its key: privileged host ports, host addresses, volumes that bind host paths or mount with options', async () => {
    // Made by an operator of this host (or anyone with its Docker socket) before the twin: a spec naming them would
    // mount /etc, or whatever the options say.
    await dockerCli(engine, ['volume', 'create', '-d', 'local', '-o', 'type=none', '-o', 'o=bind', '-o', 'device=/etc', 'twl-etcvol']);
    await dockerCli(engine, ['volume', 'create', '-d', 'local', '-o', 'type=tmpfs', '-o', 'device=tmpfs', '-o', 'o=size=1m', 'twl-tmpvol']);
    const { puller } = await group('g-gates', [
      spec('p-ok', {}, { portBindings: { '80/tcp': [{ hostIp: '', hostPort: '8080' }] } }),
      spec('p-dns', {}, { portBindings: { '53/udp': [{ hostIp: '', hostPort: '53' }] } }),
      spec('p-loop', {}, { portBindings: { '80/tcp': [{ hostIp: '127.0.0.1', hostPort: '8081' }] } }),
      spec('v-etc', { Binds: ['twl-etcvol:/data'] }),
      spec('v-tmp', { Mounts: [{ Type: 'volume', Source: 'twl-tmpvol', Target: '/data' }] }),
      spec('v-new', { Binds: ['twl-newvol:/data'] }),
    ], {});
    // An unprivileged port on the wildcard address is allowed by default; a plain volume Docker creates is too.
    assert.equal((await statusOf(puller, 'p-ok')).twin, 'stopped');
    assert.equal((await statusOf(puller, 'v-new')).twin, 'stopped');
    await assertRefused(puller, 'p-dns', /host policy refuses HostConfig\.PortBindings 53\/udp -> \*:53 \(allowedHostPorts: 1024-65535\)/);
    await assertRefused(puller, 'p-loop', /host policy refuses HostConfig\.PortBindings 80\/tcp -> 127\.0\.0\.1:8081 \(allowedHostIps: none\)/);
    await assertHeld(puller, 'v-etc', /^named volume twl-etcvol on this host binds \/etc, which the host policy refuses \(allowedBindRoots: none\)$/);
    await assertHeld(puller, 'v-tmp', /^named volume twl-tmpvol on this host has driver options .*type=tmpfs.*, which the host policy refuses \(allowVolumeOptions: false\)$/);
  });

  it('CgroupnsMode host: refused naming allowedHostNamespaces where the engine\'s default is private, nothing special where it is the default', async () => {
    const priv = await startEngine({ name: 'puller-cgns', extraArgs: ['--default-cgroupns-mode=private'] });
    try {
      const rtPriv = new DockerRuntime({ socketPath: priv.socketPath, mountInfoPath: priv.mountInfoPath });
      assert.equal((await rtPriv.checkEngine()).cgroupnsDefault, 'private', 'docker info lists the cgroupns security option');
      assert.equal((await runtime.checkEngine()).cgroupnsDefault, 'host', 'a cgroup v1 engine run as it comes');
      await copyImage(engine.socketPath, priv.socketPath, 'tl-busybox:policy');
      const specs = [spec('c-host', { CgroupnsMode: 'host' })];
      const { puller, open } = await group('g-cgns', specs, { engine: priv });
      await assertRefused(puller, 'c-host', /host policy refuses HostConfig\.CgroupnsMode host \(allowedHostNamespaces: network\)/, rtPriv);
      await puller.stop();
      pullers.splice(pullers.indexOf(puller), 1);
      const allowed = await open({ engine: priv, policy: { ...DEFAULT_TWIN_POLICY, allowedHostNamespaces: ['network', 'cgroup'] } });
      assert.equal((await statusOf(allowed, 'c-host')).twin, 'stopped');
      assert.equal((await dockerCli(priv, ['inspect', '-f', '{{.HostConfig.CgroupnsMode}}', 'c-host'])).trim(), 'host');
      await allowed.stop();
      pullers.splice(pullers.indexOf(allowed), 1);
      // The same spec on the default engine: what every container there gets.
      const { puller: v1 } = await group('g-cgns-v1', specs, {});
      assert.equal((await statusOf(v1, 'c-host')).twin, 'stopped');
    } finally {
      await priv.stop();
    }
  });

  it('what the host lacks holds the twin: a bind source removed then restored keeps the twin and its staged data; a twin not yet made is created once the host has it; an engine out of reach holds too', async () => {
    const roots = join(base, 'held');
    await mkdir(join(roots, 'data'), { recursive: true });
    const policy: TwinPolicy = { ...DEFAULT_TWIN_POLICY, allowedBindRoots: [roots] };
    const { bucket, open } = await groupUnopened('g-held', [spec('h-late', { Binds: [`${roots}/late:/late`] })], {});
    const primary = new Primary(bucket, join(base, 'held-primary'));
    const web = await primary.container('h-web', imageId);
    await bucket.putSpec('h-web', spec('h-web', { Binds: [`${roots}/data:/data`] }));
    await web.commit(async (u) => writeFile(join(u, 'state'), 'v1\n'));
    // The puller talks to its engine through a relay the test can cut.
    const relay = await startUnixRelay(join(base, 'held-docker.sock'), engine.socketPath);
    try {
      const puller = await open({ policy, engine: { socketPath: relay.path, mountInfoPath: engine.mountInfoPath } });
      const stateDir = join(base, 'g-held');
      const twin = await runtime.twinState('h-web');
      assert.ok(twin.state === 'stopped', twin.state);
      /** The twin h-web is the first one, never removed, and holds `content` with `seq` staged. */
      const assertKept = async (seq: number, content: string): Promise<void> => {
        const now = await runtime.twinState('h-web');
        assert.ok(now.state === 'stopped', now.state);
        assert.equal(now.id, twin.id, 'the same twin');
        assert.equal(await readFile(join(now.layers.upperDir, 'state'), 'utf8'), content);
        assert.equal(await appliedSeq(stateDir, 'g-held', 'h-web'), seq);
      };
      await assertKept(1, 'v1\n');
      await assertHeld(puller, 'h-late', new RegExp(`^bind-mount source ${roots}/late does not exist on this host \\(ENOENT\\)$`));

      // The source goes away (an operator moves it, a mount is late after a reboot): the next full check (the head
      // moved) holds the twin, and staging goes on into it.
      await rm(join(roots, 'data'), { recursive: true });
      await web.commit(async (u) => writeFile(join(u, 'state'), 'v2\n'));
      await puller.pollOnce();
      const held = await statusOf(puller, 'h-web');
      assert.equal(held.twin, 'stopped', JSON.stringify(held));
      assert.deepEqual(held.hostProblems?.map((h) => h.problem), [`bind-mount source ${roots}/data does not exist on this host (ENOENT)`]);
      assert.match(held.reason ?? '', /^held since /);
      await assertKept(2, 'v2\n');
      // Checked again every poll; the time it was first seen stays.
      await puller.pollOnce();
      assert.equal((await statusOf(puller, 'h-web')).hostProblems?.[0]?.since, held.hostProblems?.[0]?.since);
      assert.equal(existsSync(join(roots, 'data')), false, 'nothing created the missing source');

      // Restored (and the late one made): kept, and created, at the next poll.
      await mkdir(join(roots, 'data'));
      await mkdir(join(roots, 'late'));
      await puller.pollOnce();
      const back = await statusOf(puller, 'h-web');
      assert.equal(back.twin, 'stopped');
      assert.equal(back.hostProblems, undefined, JSON.stringify(back));
      assert.equal(back.reason, undefined, JSON.stringify(back));
      await assertKept(2, 'v2\n');
      assert.equal((await statusOf(puller, 'h-late')).twin, 'stopped');

      // The engine out of the puller's reach (dockerd runs on): held, nothing removed, staging resumes after.
      await relay.cut();
      await web.commit(async (u) => writeFile(join(u, 'state'), 'v3\n'));
      await puller.pollOnce();
      const cut = await statusOf(puller, 'h-web');
      assert.match(cut.hostProblems?.[0]?.problem ?? '', /^docker inspect failed: connect (ENOENT|ECONNREFUSED) /, JSON.stringify(cut));
      assert.equal(cut.twin, 'stopped', 'the twin as last seen');
      await relay.restore();
      await puller.pollOnce();
      const healed = await statusOf(puller, 'h-web');
      assert.equal(healed.hostProblems, undefined, JSON.stringify(healed));
      await assertKept(3, 'v3\n');
      await puller.stop();
      pullers.splice(pullers.indexOf(puller), 1);
    } finally {
      await relay.close();
    }
  });

  it('a bind source removed (or made a symlink out of the roots) after staging is caught right before the twin starts: not started, said in the report, the status and the log', async () => {
    const roots = join(base, 'start');
    for (const d of ['www', 'conf', 'kept']) await mkdir(join(roots, d), { recursive: true });
    const policy: TwinPolicy = { ...DEFAULT_TWIN_POLICY, allowedBindRoots: [roots] };
    const logger = collectingLogger();
    const sleeper = (name: string, host: RunHostConfig): TwinSpec => ({ ...spec(name, host), cmd: ['sleep', '3600'] });
    const { bucket, open } = await groupUnopened('g-start', [
      sleeper('s-link', { Mounts: [{ Type: 'bind', Source: `${roots}/conf`, Target: '/conf' }] }),
      sleeper('s-kept', { Binds: [`${roots}/kept:/kept:ro`] }),
    ], {});
    const primary = new Primary(bucket, join(base, 'start-primary'));
    const gone = await primary.container('s-gone', imageId);
    await bucket.putSpec('s-gone', sleeper('s-gone', { Binds: [`${roots}/www:/www`] }));
    await gone.commit(async (u) => writeFile(join(u, 'index.html'), 'staged\n'));
    const puller = await open({ policy, log: logger.log });
    assert.equal(await appliedSeq(join(base, 'g-start'), 'g-start', 's-gone'), 1, 'staged');
    for (const name of ['s-gone', 's-link', 's-kept']) assert.equal((await statusOf(puller, name)).twin, 'stopped');
    await rm(join(roots, 'www'), { recursive: true });
    await rm(join(roots, 'conf'), { recursive: true });
    await symlink('/etc', join(roots, 'conf'));

    const report = await puller.startTwins();
    const byName = new Map(report.containers.map((c) => [c.name, c]));
    assert.equal(byName.get('s-kept')?.ok, true, JSON.stringify(report));
    assert.equal(byName.get('s-gone')?.ok, false);
    assert.equal(byName.get('s-gone')?.error, `not started: bind-mount source ${roots}/www does not exist on this host (ENOENT)`);
    assert.equal(byName.get('s-link')?.ok, false);
    assert.equal(byName.get('s-link')?.error, `not started: bind-mount source ${roots}/conf resolves to /etc, outside the allowed bind roots (allowedBindRoots: ${roots})`);
    for (const name of ['s-gone', 's-link']) {
      assert.equal((await runtime.twinState(name)).state, 'stopped', `${name} was not started`);
      assert.equal((await statusOf(puller, name)).reason, byName.get(name)?.error);
      assert.ok(logger.lines.some((l) => l.includes('twin not started') && l.includes(name)), `${name} is logged`);
    }
    assert.equal((await runtime.twinState('s-kept')).state, 'running');
    assert.equal(existsSync(join(roots, 'www')), false, 'Docker did not get to create the missing source');
    const kept = await runtime.twinState('s-gone');
    assert.ok(kept.state === 'stopped');
    assert.equal(await readFile(join(kept.layers.upperDir, 'index.html'), 'utf8'), 'staged\n', 'what was staged stays');
    await dockerCli(engine, ['rm', '-f', 's-kept']);
  });
});
