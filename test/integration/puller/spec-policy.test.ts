// The twin policy through the puller (issue 9): specs read from the embedded S3 server, twins on a real engine. A
// refused spec is named in the status of its container (twin "refused", the reason naming the field) and gets no
// twin; the others are not held back. Privileged fields need a trusted spec; the host's policy refuses them anyway;
// what the standby lacks refuses too; a policy made stricter removes the stopped twin it would no longer create.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { DEFAULT_TWIN_POLICY, DockerRuntime, twinSpecSchema } from '../../../src/docker/index.js';
import type { RunHostConfig, TwinPolicy, TwinSpec } from '../../../src/docker/index.js';
import type { Puller } from '../../../src/puller/index.js';
import { Bucket, Signatures, type S3BlobStore } from '../../../src/store/index.js';
import { importBusyboxImage } from '../../../src/lab/busybox-image.js';
import { dockerCli, startEngine, type Engine } from '../../../src/lab/engine.js';
import { testS3Store, withS3, type TestS3 } from '../../support/s3.js';
import { testKey } from '../../support/signing.js';
import { bucketFor, collectingLogger, openPuller, twinSpec } from './helpers.js';

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

  /** `unsigned`: the specs are written with no key and read under acceptUnsigned (a group moving to signed commits). */
  async function group(name: string, specs: TwinSpec[], opts: { policy?: TwinPolicy; trustUnsignedSpecs?: boolean; unsigned?: boolean }): Promise<{ puller: Puller; open: (o: { policy?: TwinPolicy; trustUnsignedSpecs?: boolean }) => Promise<Puller> }> {
    const bucket = opts.unsigned === true
      ? new Bucket(store, { prefix: 'twinlayer', group: name, signatures: new Signatures({ signer: null, trusted: [testKey.trusted], acceptUnsigned: true }) })
      : bucketFor(store, name);
    for (const s of specs) await bucket.putSpec(s.name, s);
    const stateDir = join(base, name);
    await mkdir(stateDir, { recursive: true });
    const open = async (o: { policy?: TwinPolicy; trustUnsignedSpecs?: boolean }): Promise<Puller> => {
      const p = await openPuller({
        socketPath: engine.socketPath, mountInfoPath: engine.mountInfoPath, bucket, group: name, stateDir, log: collectingLogger().log,
        ...(o.policy === undefined ? {} : { twinPolicy: o.policy }), ...(o.trustUnsignedSpecs === undefined ? {} : { trustUnsignedSpecs: o.trustUnsignedSpecs }),
      });
      pullers.push(p);
      await p.pollOnce();
      return p;
    };
    return { puller: await open(opts), open };
  }

  async function statusOf(p: Puller, name: string): Promise<{ twin: string; reason?: string }> {
    const c = (await p.status()).containers.find((x) => x.name === name);
    assert.ok(c, `the status lists ${name}`);
    return c;
  }

  async function assertRefused(p: Puller, name: string, want: RegExp): Promise<void> {
    const st = await statusOf(p, name);
    assert.equal(st.twin, 'refused', `${name}: ${JSON.stringify(st)}`);
    assert.match(st.reason ?? '', want);
    assert.ok(st.reason?.includes(`container=${name}`), `the reason names the container: ${st.reason}`);
    assert.equal((await runtime.twinState(name)).state, 'absent', `${name}: no twin`);
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
    // Docker itself would have created the missing directory and mounted it empty.
    await assertRefused(puller, 't-bind-gone', new RegExp(`bind-mount source ${roots}/gone does not exist on this host`));
    await assertRefused(puller, 't-bind-out', /host policy refuses HostConfig\.Binds\/Mounts \/etc \(allowedBindRoots: /);
    await assertRefused(puller, 't-ghost', /network ghostnet does not exist on this host/);
    await assertRefused(puller, 't-device', /host policy refuses HostConfig\.Devices \/dev\/twl-absent/);

    // The operator tightens the policy: the stopped twin it would no longer create goes, and the status says why.
    await puller.stop();
    pullers.splice(pullers.indexOf(puller), 1);
    const strict = await open({ policy: { ...policy, allowedCapabilities: [] }, trustUnsignedSpecs: true });
    await assertRefused(strict, 't-caps', /host policy refuses HostConfig\.CapAdd NET_ADMIN \(allowedCapabilities: none\)/);
  });
});
