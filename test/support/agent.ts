// An Agent in process for the integration tests: short settle, fence and poll times, one host on one engine; and the
// fixture those tests run it in (a temp dir, the embedded S3 server with one bucket, a real engine, the group's keys),
// stopped agents first, also when a test, or the setup half-way, fails.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Agent, type AgentOptions } from '../../src/agent/index.js';
import { DockerRuntime } from '../../src/docker/index.js';
import { importBusyboxImage } from '../../src/lab/busybox-image.js';
import { startEngine, type Engine } from '../../src/lab/engine.js';
import { GroupKeys } from '../../src/lab/group-keys.js';
import { silentLogger } from '../../src/log/logger.js';
import { S3RVER_CREDENTIALS, startS3Server, type S3Server } from '../../src/s3server/index.js';
import { S3BlobStore, type Bucket } from '../../src/store/index.js';
import { setUpOrTearDown, type Teardown } from './teardown.js';

export interface InProcessAgentOptions {
  socketPath: string;
  bucket: Bucket;
  hostId: string;
  group: string;
  stateDir: string;
  /** keepalived's state file the agent reads at start (none by default). */
  vrrpStateFile?: string;
  /** Overrides the short times (a test that needs the settle time far above the fence interval). */
  timing?: Partial<Pick<AgentOptions, 'fenceIntervalMs' | 'backupSettleMs' | 'standbyCheckMs'>>;
}

export function inProcessAgent(o: InProcessAgentOptions): Agent {
  return new Agent({
    runtime: new DockerRuntime({ socketPath: o.socketPath }),
    bucket: o.bucket,
    log: silentLogger,
    hostId: o.hostId,
    group: o.group,
    label: 'twinlayer.enable',
    stateDir: o.stateDir,
    excludes: [],
    debounceQuietMs: 20,
    debounceMaxMs: 200,
    uploadConcurrency: 2,
    reconcileIntervalMs: 60_000,
    pollIntervalMs: 50,
    downloadConcurrency: 2,
    startConcurrency: 4,
    finalizeDeadlineMs: 500,
    bootTimeoutMs: 10_000,
    vrrpStateFile: o.vrrpStateFile,
    fenceIntervalMs: 200,
    backupSettleMs: 400,
    stopTimeoutSeconds: 1,
    ...o.timing,
  });
}

export interface AgentFixtureOptions {
  /** The temp dir's name prefix (`base`), e.g. `tl-refence-`. */
  tmpPrefix: string;
  /** The engine's name (src/lab/engine.ts). */
  engine: string;
  /** The S3 server's one bucket. */
  bucket: string;
  /** A busybox image imported on the engine under this tag. */
  image?: string;
  /** Hosts the group's keys are made for (`keys`). */
  hosts?: string[];
}

export interface AgentFixture {
  /** A temp dir for state dirs and files (the S3 server's data and the keys are in it too); removed at close(). */
  readonly base: string;
  readonly s3: S3Server;
  readonly engine: Engine;
  /** The bucket on the S3 server. */
  readonly store: S3BlobStore;
  /** The group's keys (only with `hosts`). */
  readonly keys: GroupKeys;
  /** An agent in process on the engine (inProcessAgent), stopped at close(); the test opens and starts it. */
  agent(o: Omit<InProcessAgentOptions, 'socketPath'>): Agent;
  /** Stops the agents, then the engine and the S3 server; removes `base`. Throws an AggregateError of what failed,
   *  after trying everything. */
  close(): Promise<void>;
}

export async function startAgentFixture(o: AgentFixtureOptions): Promise<AgentFixture> {
  return setUpOrTearDown(async (teardown: Teardown) => {
    const base = await mkdtemp(join(tmpdir(), o.tmpPrefix));
    teardown.defer(() => rm(base, { recursive: true, force: true }));
    const s3 = await startS3Server({ dir: join(base, 's3'), buckets: [o.bucket], silent: true });
    teardown.defer(() => s3.close());
    const engine = await startEngine({ name: o.engine });
    teardown.defer(() => engine.stop());
    if (o.image !== undefined) await importBusyboxImage(engine.socketPath, o.image);
    const store = new S3BlobStore({ bucket: o.bucket, region: 'us-east-1', endpoint: s3.endpoint, pathStyle: true, credentials: { ...S3RVER_CREDENTIALS } });
    teardown.defer(() => store.destroy());
    const keys = o.hosts === undefined ? undefined : await GroupKeys.create(join(base, 'keys'), o.hosts);
    return {
      base,
      s3,
      engine,
      store,
      get keys() {
        if (keys === undefined) throw new Error('the agent fixture has no keys: start it with `hosts`');
        return keys;
      },
      agent(opts) {
        const agent = inProcessAgent({ socketPath: engine.socketPath, ...opts });
        teardown.defer(() => agent.stop());
        return agent;
      },
      close: () => teardown.run(),
    };
  });
}
