// Volumes of the standby that are not the twin's own (review of the volumes merge, findings 1 and 2). A real engine,
// the embedded S3 server, the puller in process. A volume that exists on the standby and that twinlayer did not
// create (an operator's) is mounted by a twin only from a trusted spec: an unsigned spec naming it in its binds or in
// its `volumes` gets no twin, and the volume is left as it was. Trusted or not, staging writes only into the volumes
// the spec's `volumes` names: a commit that names another volume the twin mounts is refused whole, and a full
// commit prunes nothing in it. Staging into a twin pauses while another container of the standby uses one of its
// replicated volumes (the status says which), and goes on once it does not.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { twinSpecSchema } from '../../../src/docker/index.js';
import type { RunHostConfig, TwinSpec } from '../../../src/docker/index.js';
import type { ContainerStatus, Puller } from '../../../src/puller/index.js';
import { Bucket, Signatures } from '../../../src/store/index.js';
import { dockerCli } from '../../../src/lab/engine.js';
import { startPullerFixture, type PullerFixture } from '../../support/puller.js';
import { testKey } from '../../support/signing.js';
import { appliedSeq, bucketFor, collectingLogger, Primary, twinSpec } from './helpers.js';

describe('puller: volumes of the standby that are not the twin\'s own', { timeout: 300_000 }, () => {
  let fx: PullerFixture;

  before(async () => {
    fx = await startPullerFixture({ tmpPrefix: 'tl-voltrust-', engine: 'puller-voltrust', image: 'tl-busybox:voltrust' });
  });

  after(() => fx?.close());

  /** A spec mounting the named volumes of `binds` (`name:/dest`), replicating those of `replicated`. */
  const spec = (name: string, binds: string[], replicated: string[]): TwinSpec => {
    const host: RunHostConfig = { Binds: binds };
    const volumes = replicated.map((v) => {
      const bind = binds.find((b) => b.startsWith(`${v}:`));
      assert.ok(bind, `${v} is bound`);
      return { name: v, destination: bind.slice(v.length + 1) };
    });
    return twinSpecSchema.parse({ ...twinSpec(name, fx.imageId), hostConfig: host, config: {}, networks: {}, unsupported: [], volumes });
  };

  /** An operator's volume on the standby (no twinlayer label) holding `keep`; returns its dir. */
  async function operatorVolume(name: string): Promise<string> {
    await dockerCli(fx.engine, ['volume', 'create', name]);
    const dir = (await dockerCli(fx.engine, ['volume', 'inspect', '-f', '{{.Mountpoint}}', name])).trim();
    await writeFile(join(dir, 'keep'), `${name} belongs to the operator\n`);
    return dir;
  }

  async function open(bucket: Bucket, group: string, trustUnsignedSpecs = false): Promise<Puller> {
    const stateDir = join(fx.base, group);
    await mkdir(stateDir, { recursive: true });
    const p = await fx.openPuller({ bucket, group, stateDir, log: collectingLogger().log, trustUnsignedSpecs });
    await p.pollOnce();
    return p;
  }

  const unsignedBucket = (group: string): Bucket =>
    new Bucket(fx.store, { prefix: 'twinlayer', group, signatures: new Signatures({ signer: null, trusted: [testKey.trusted], acceptUnsigned: true }) });

  async function statusOf(p: Puller, name: string): Promise<ContainerStatus> {
    const c = (await p.status()).containers.find((x) => x.name === name);
    assert.ok(c, `the status lists ${name}`);
    return c;
  }

  it('an unsigned spec gets no twin on an operator\'s volume (bound, or named as replicated); on a volume it makes, it does', async () => {
    const dir = await operatorVolume('ops-data');
    const bucket = unsignedBucket('g-untrusted');
    for (const s of [
      spec('u-bind', ['ops-data:/data'], []),
      spec('u-repl', ['ops-data:/data'], ['ops-data']),
      spec('u-own', ['u-own-data:/data'], ['u-own-data']),
    ]) await bucket.putSpec(s.name, s);
    const puller = await open(bucket, 'g-untrusted');
    for (const name of ['u-bind', 'u-repl']) {
      const st = await statusOf(puller, name);
      assert.equal(st.twin, 'refused', `${name}: ${JSON.stringify(st)}`);
      assert.match(st.reason ?? '', /not signed by a key the group trusts and asks for an existing volume of this host that twinlayer did not create: ops-data/);
      assert.equal((await fx.runtime.twinState(name)).state, 'absent', `${name}: no twin`);
    }
    assert.deepEqual(await readdir(dir), ['keep']);
    // Its own volume, which twinlayer creates (labelled): an unsigned spec gets its twin, as before.
    assert.equal((await statusOf(puller, 'u-own')).twin, 'stopped');
    assert.equal((await dockerCli(fx.engine, ['volume', 'inspect', '-f', '{{index .Labels "twinlayer.twin"}}', 'u-own-data'])).trim(), 'true');
    // The host that trusts its bucket's specs as a whole mounts the operator's volume.
    await puller.stop();
    const trusting = await open(bucket, 'g-untrusted', true);
    assert.equal((await statusOf(trusting, 'u-bind')).twin, 'stopped');
    await trusting.stop();
  });

  it('a trusted spec: staging writes only into the volumes it replicates, never into an operator\'s volume it mounts besides', async () => {
    const opsA = await operatorVolume('ops-a');
    const opsB = await operatorVolume('ops-b');
    const bucket = bucketFor(fx.store, 'g-trusted');
    const primary = new Primary(bucket, join(fx.base, 'trusted-primary'));
    const vols = join(fx.base, 'trusted-vols');
    for (const d of ['bad-data', 'bad-ops', 'good-data', 'good-ops']) await mkdir(join(vols, d), { recursive: true });
    // t-bad's primary ships a tree for ops-a too (a spec naming it in its binds only, a primary that replicates it
    // anyway); t-good's ships only its replicated volume, with a full commit that would prune anything else.
    const badSpec = spec('t-bad', ['ops-a:/ops', 't-bad-data:/data'], ['t-bad-data']);
    const goodSpec = spec('t-good', ['ops-b:/ops', 't-good-data:/data'], ['t-good-data']);
    const bad = await primary.container('t-bad', fx.imageId, {
      spec: badSpec, volumes: [{ key: 't-bad-data', destination: '/data', dir: join(vols, 'bad-data') }, { key: 'ops-a', destination: '/ops', dir: join(vols, 'bad-ops') }],
    });
    const good = await primary.container('t-good', fx.imageId, { spec: goodSpec, volumes: [{ key: 't-good-data', destination: '/data', dir: join(vols, 'good-data') }] });
    await bad.commit(async () => {
      await writeFile(join(vols, 'bad-data', 'a'), 'bad data\n');
      await writeFile(join(vols, 'bad-ops', 'planted'), 'not yours\n');
    });
    await good.commit(async () => writeFile(join(vols, 'good-data', 'a'), 'good v1\n'));
    const puller = await open(bucket, 'g-trusted');
    const stateDir = join(fx.base, 'g-trusted');

    const badStatus = await statusOf(puller, 't-bad');
    assert.match(badStatus.refusedCommit?.reason ?? '', /volume ops-a is not a volume of this twin/, JSON.stringify(badStatus));
    assert.equal(await appliedSeq(stateDir, 'g-trusted', 't-bad'), 0, 'the commit naming ops-a is refused whole');
    assert.deepEqual(await readdir(opsA), ['keep']);

    assert.equal(await appliedSeq(stateDir, 'g-trusted', 't-good'), 2);
    const twin = await fx.runtime.twinState('t-good');
    assert.ok(twin.state === 'stopped', twin.state);
    assert.ok(twin.volumes['t-good-data'] !== undefined && twin.volumes['ops-b'] === opsB, JSON.stringify(twin.volumes));
    assert.equal(await readFile(join(twin.volumes['t-good-data'], 'a'), 'utf8'), 'good v1\n');
    // A full commit makes each replicated volume exactly the primary's: the operator's volume is not among them.
    await good.commit(async () => writeFile(join(vols, 'good-data', 'a'), 'good v2\n'), 'full');
    await puller.pollOnce();
    assert.equal(await appliedSeq(stateDir, 'g-trusted', 't-good'), 3);
    assert.equal(await readFile(join(twin.volumes['t-good-data'], 'a'), 'utf8'), 'good v2\n');
    assert.deepEqual(await readdir(opsB), ['keep']);
    assert.equal(await readFile(join(opsB, 'keep'), 'utf8'), 'ops-b belongs to the operator\n');
  });

  it('staging pauses while another container uses a replicated volume of the twin, and goes on once it does not', async () => {
    const bucket = bucketFor(fx.store, 'g-shared');
    const primary = new Primary(bucket, join(fx.base, 'shared-primary'));
    const vol = join(fx.base, 'shared-vol');
    await mkdir(vol, { recursive: true });
    const web = await primary.container('s-web', fx.imageId, { spec: spec('s-web', ['s-data:/data'], ['s-data']), volumes: [{ key: 's-data', destination: '/data', dir: vol }] });
    await web.commit(async () => writeFile(join(vol, 'state'), 'v1\n'));
    const puller = await open(bucket, 'g-shared');
    const stateDir = join(fx.base, 'g-shared');
    const twin = await fx.runtime.twinState('s-web');
    assert.ok(twin.state === 'stopped', twin.state);
    const dir = twin.volumes['s-data'];
    assert.ok(dir !== undefined);
    assert.equal(await readFile(join(dir, 'state'), 'utf8'), 'v1\n');
    assert.equal(await appliedSeq(stateDir, 'g-shared', 's-web'), 1);

    // Someone on the standby creates a container on the twin's volume (stopped: using it is enough).
    await dockerCli(fx.engine, ['create', '--name', 'intruder', '-v', 's-data:/x', 'tl-busybox:voltrust', 'sh']);
    try {
      await web.commit(async () => writeFile(join(vol, 'state'), 'v2\n'));
      await puller.pollOnce();
      const st = await statusOf(puller, 's-web');
      assert.match(st.reason ?? '', /^staging paused: volume s-data is used by container intruder on this host/, JSON.stringify(st));
      assert.equal(await appliedSeq(stateDir, 'g-shared', 's-web'), 1);
      assert.equal(await readFile(join(dir, 'state'), 'utf8'), 'v1\n', 'nothing written while another container uses it');
    } finally {
      await dockerCli(fx.engine, ['rm', '-f', 'intruder']);
    }
    await puller.pollOnce();
    assert.equal(await appliedSeq(stateDir, 'g-shared', 's-web'), 2);
    assert.equal(await readFile(join(dir, 'state'), 'utf8'), 'v2\n');
    assert.equal((await statusOf(puller, 's-web')).reason, undefined);
  });
});
