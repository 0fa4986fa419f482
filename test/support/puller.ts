// What the puller's integration tests run against: a temp dir, the embedded S3 server (optionally behind the lab's
// fault proxy), and a real engine with the busybox image the twin specs name; Pullers on that engine, stopped with
// the rest. Everything started is stopped also when a test, or the setup half-way, fails.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { DockerRuntime, type TwinPolicy } from '../../src/docker/index.js';
import { importBusyboxImage } from '../../src/lab/busybox-image.js';
import { startEngine, type Engine } from '../../src/lab/engine.js';
import { startFaultProxy, type FaultProxy } from '../../src/lab/fault-proxy.js';
import type { Logger } from '../../src/log/logger.js';
import { Puller } from '../../src/puller/index.js';
import type { PullerOptions } from '../../src/puller/options.js';
import type { Bucket, S3BlobStore } from '../../src/store/index.js';
import { testS3Store, withS3, type TestS3 } from './s3.js';
import { setUpOrTearDown, Teardown } from './teardown.js';

/** The image twinSpec (test/integration/puller/helpers.ts) names. */
export const PULLER_IMAGE = 'tl-busybox:puller';

export interface OpenPullerOptions {
  socketPath: string;
  mountInfoPath: string;
  bucket: Bucket;
  group: string;
  stateDir: string;
  log: Logger;
  maxRecordsPerPoll?: number;
  twinPolicy?: TwinPolicy;
  trustUnsignedSpecs?: boolean;
  maxQueued?: number;
  /** The keeper's full check of every twin every this many polls (default 20). */
  twinCheckEvery?: number;
  imageLoad?: PullerOptions['imageLoad'];
}

/** A Puller on the engine, opened; the caller stops it. */
export async function openPuller(opts: OpenPullerOptions): Promise<Puller> {
  const puller = new Puller({
    runtime: new DockerRuntime({ socketPath: opts.socketPath, mountInfoPath: opts.mountInfoPath }),
    bucket: opts.bucket,
    log: opts.log,
    group: opts.group,
    stateDir: opts.stateDir,
    pollIntervalMs: 50,
    downloadConcurrency: 4,
    startConcurrency: 4,
    ...(opts.maxRecordsPerPoll === undefined ? {} : { maxRecordsPerPoll: opts.maxRecordsPerPoll }),
    ...(opts.maxQueued === undefined ? {} : { maxQueued: opts.maxQueued }),
    ...(opts.twinCheckEvery === undefined ? {} : { twinCheckEvery: opts.twinCheckEvery }),
    ...(opts.twinPolicy === undefined ? {} : { twinPolicy: opts.twinPolicy }),
    ...(opts.trustUnsignedSpecs === undefined ? {} : { trustUnsignedSpecs: opts.trustUnsignedSpecs }),
    ...(opts.imageLoad === undefined ? {} : { imageLoad: opts.imageLoad }),
  });
  await puller.open();
  return puller;
}

export interface PullerFixtureOptions {
  /** The temp dir's name prefix (`base`), e.g. `tl-catchup-`. */
  tmpPrefix: string;
  /** The engine's name (src/lab/engine.ts); none is started without one (a test of the journal alone). */
  engine?: string;
  /** The tag the busybox image is imported under on the engine (PULLER_IMAGE by default). */
  image?: string;
  /** Starts the lab's fault proxy in front of the S3 server, and `viaProxy`, a store through it; with options, the
   *  store's (testS3Store's: the timeouts a hung request is given up after). */
  proxy?: boolean | Parameters<typeof testS3Store>[1];
}

export interface PullerFixture {
  /** A temp dir for the test's state dirs and files; removed at close(). */
  readonly base: string;
  readonly s3: TestS3;
  /** Straight to the S3 server: what the test writes as the primary. */
  readonly store: S3BlobStore;
  /** The fault proxy in front of the S3 server (only with `proxy`). */
  readonly proxy: FaultProxy;
  /** Through the proxy: what the pullers read (only with `proxy`). */
  readonly viaProxy: S3BlobStore;
  /** The engine the twins are made on (only with `engine`). */
  readonly engine: Engine;
  /** The test's own view of the twins on the engine. */
  readonly runtime: DockerRuntime;
  /** The id of the busybox image on the engine. */
  readonly imageId: string;
  /** A Puller on the engine (openPuller; another socket or mount table can be named), stopped at close(). */
  openPuller(opts: Omit<OpenPullerOptions, 'socketPath' | 'mountInfoPath'> & { socketPath?: string; mountInfoPath?: string }): Promise<Puller>;
  /** Runs `step` at close(), before the fixture's own (so before the engine and the S3 server stop). */
  defer(step: () => unknown): void;
  /** The upper dir of the twin `name`; fails the test when there is no twin. */
  upperOf(name: string): Promise<string>;
  /** Stops the pullers and whatever was deferred, then the engine, the proxy and the S3 server; removes `base`.
   *  Throws an AggregateError of what failed, after trying everything. */
  close(): Promise<void>;
}

/** Only what a fixture was asked for exists; reading anything else is a bug in the test. */
function asked<T>(value: T | undefined, what: string, option: string): T {
  if (value === undefined) throw new Error(`the puller fixture has no ${what}: start it with \`${option}\``);
  return value;
}

export async function startPullerFixture(o: PullerFixtureOptions): Promise<PullerFixture> {
  return setUpOrTearDown(async (teardown: Teardown) => {
    const base = await mkdtemp(join(tmpdir(), o.tmpPrefix));
    teardown.defer(() => rm(base, { recursive: true, force: true }));
    const s3 = await withS3();
    teardown.defer(() => s3.close());
    const store = testS3Store(s3);
    teardown.defer(() => store.destroy());
    let proxy: FaultProxy | undefined;
    let viaProxy: S3BlobStore | undefined;
    if (o.proxy !== undefined && o.proxy !== false) {
      const started = await startFaultProxy(s3.endpoint);
      proxy = started;
      teardown.defer(() => started.close());
      const through = testS3Store({ endpoint: started.endpoint, bucket: s3.bucket }, o.proxy === true ? {} : o.proxy);
      viaProxy = through;
      teardown.defer(() => through.destroy());
    }
    let engine: Engine | undefined;
    let runtime: DockerRuntime | undefined;
    let imageId: string | undefined;
    if (o.engine !== undefined) {
      const started = await startEngine({ name: o.engine });
      engine = started;
      teardown.defer(() => started.stop());
      runtime = new DockerRuntime({ socketPath: started.socketPath, mountInfoPath: started.mountInfoPath });
      imageId = await importBusyboxImage(started.socketPath, o.image ?? PULLER_IMAGE);
    }
    const fixture: PullerFixture = {
      base,
      s3,
      store,
      get proxy() {
        return asked(proxy, 'fault proxy', 'proxy');
      },
      get viaProxy() {
        return asked(viaProxy, 'store through the proxy', 'proxy');
      },
      get engine() {
        return asked(engine, 'engine', 'engine');
      },
      get runtime() {
        return asked(runtime, 'runtime', 'engine');
      },
      get imageId() {
        return asked(imageId, 'image', 'engine');
      },
      async openPuller(opts) {
        const on = fixture.engine;
        const puller = await openPuller({ socketPath: on.socketPath, mountInfoPath: on.mountInfoPath, ...opts });
        teardown.defer(() => puller.stop());
        return puller;
      },
      defer(step) {
        teardown.defer(step);
      },
      async upperOf(name) {
        const twin = await fixture.runtime.twinState(name);
        if (twin.state === 'absent') assert.fail(`twin ${name} absent`);
        return twin.layers.upperDir;
      },
      close: () => teardown.run(),
    };
    return fixture;
  });
}
