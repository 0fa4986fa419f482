// A promoted twin gets its primary's restart policy back from the spec in the bucket only when that spec names it: one
// of another container leaves the policy as it is. Real engine, real S3 server, signed specs.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RestartPolicies } from '../../../src/agent/restart-policies.js';
import { DockerRuntime, type TwinSpec } from '../../../src/docker/index.js';
import { importBusyboxImage } from '../../../src/lab/busybox-image.js';
import { startEngine, type Engine } from '../../../src/lab/engine.js';
import { GroupKeys } from '../../../src/lab/group-keys.js';
import { createLogger } from '../../../src/log/logger.js';
import { Bucket, type S3BlobStore } from '../../../src/store/index.js';
import { testS3Store, withS3, type TestS3 } from '../../support/s3.js';

const TAG = `twl-rp-${randomBytes(3).toString('hex')}:1`;

describe('restart policies restored at promotion', { timeout: 180_000 }, () => {
  let dir = '';
  let engine: Engine;
  let s3: TestS3;
  let store: S3BlobStore;
  let bucket: Bucket;
  let runtime: DockerRuntime;
  let made: TwinSpec;
  const logged: string[] = [];

  const policyOf = async (): Promise<string> => (await runtime.restartPolicyOf('web')).name;
  const restore = (): Promise<{ name: string; error: string }[]> =>
    new RestartPolicies({ runtime, bucket, log: createLogger({ write: (l) => logged.push(l) }), askMs: 5_000 }).restore(['web'], new Map());

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tl-rp-'));
    engine = await startEngine({ name: 'rp' });
    runtime = new DockerRuntime({ socketPath: engine.socketPath, mountInfoPath: engine.mountInfoPath });
    const imageId = await importBusyboxImage(engine.socketPath, TAG);
    s3 = await withS3();
    store = testS3Store(s3);
    const keys = await GroupKeys.create(join(dir, 'keys'), ['host-a']);
    bucket = new Bucket(store, { prefix: 'tl/rp', group: 'g', signatures: keys.signatures('host-a'), log: createLogger({ write: () => undefined }) });
    made = {
      version: 1, name: 'web', image: TAG, imageId, cmd: ['sleep', '3600'], entrypoint: null, env: [], labels: { 'twinlayer.enable': 'true' },
      workingDir: '', user: '', exposedPorts: [], portBindings: {}, networkMode: 'none', restartPolicy: { name: 'always', maximumRetryCount: 0 },
      capturedAt: new Date().toISOString(),
    };
    // The twin, made from `made`, runs with policy no until it is promoted.
    await runtime.ensureTwin(made, { group: 'g', trusted: true });
  });
  after(async () => {
    await engine?.stop();
    store?.destroy();
    await s3?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('a spec that names another container is not used', async () => {
    assert.equal(await policyOf(), 'no');
    await bucket.putSpec('web', { ...made, name: 'db' });
    assert.deepEqual(await restore(), []);
    assert.equal(await policyOf(), 'no');
    assert.ok(logged.some((l) => l.includes('names another container')), logged.join('\n'));
  });

  it('the spec the twin was made from gives it its primary\'s policy back', async () => {
    await bucket.putSpec('web', made);
    assert.deepEqual(await restore(), []);
    assert.equal(await policyOf(), 'always');
  });
});
