// Builds the outside-world seams from a validated config (the bucket, checked reachable, and the Docker runtime) and
// the pusher's and puller's settings, which `push`, `pull` and the agent's two roles share.
import { DockerRuntime } from '../docker/index.js';
import { twinPolicyOf } from '../config/twin-policy.js';
import type { Config } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/index.js';
import { Bucket, S3BlobStore, StoreUnreachableError } from '../store/index.js';
import { signaturesFor, type BucketRole } from './signing.js';

/** `requireReachable: false` (the agent): a host must come up and decide from its own record while the bucket is
 *  down; a bucket that answers but does not exist still stops the start. The signature set-up is checked first: it
 *  needs nothing but the config and the key file. */
export async function openBucket(config: Config, log: Logger, role: BucketRole, opts: { requireReachable?: boolean; metrics?: Metrics } = {}): Promise<{ bucket: Bucket; store: S3BlobStore }> {
  const signatures = await signaturesFor(config, role, log);
  const store = new S3BlobStore({
    bucket: config.bucket,
    region: config.region,
    endpoint: config.endpoint,
    pathStyle: config.pathStyle,
    log,
    metrics: opts.metrics,
  });
  try {
    await store.checkReachable();
  } catch (err) {
    if (opts.requireReachable !== false || !(err instanceof StoreUnreachableError)) throw err;
    log.warn('the bucket is unreachable at start; going on', { bucket: config.bucket, err });
  }
  return { bucket: new Bucket(store, { prefix: config.prefix, group: config.group, signatures, log }), store };
}

export function openDocker(config: Config, log: Logger): DockerRuntime {
  return new DockerRuntime({
    socketPath: config.dockerSocket,
    log,
    containerd: {
      ...(config.containerdSocket === undefined ? {} : { socketPath: config.containerdSocket }),
      ...(config.containerdRoot === undefined ? {} : { root: config.containerdRoot }),
      ctrPath: config.ctrPath,
      daemonConfigPath: config.dockerDaemonConfig,
    },
  });
}

/** The pusher's settings (`twinlayer push`, the agent as primary). */
export function pushSettings(config: Config) {
  return {
    hostId: config.hostId,
    group: config.group,
    label: config.label,
    stateDir: config.stateDir,
    excludes: config.excludes,
    debounceQuietMs: config.debounceQuietMs,
    debounceMaxMs: config.debounceMaxMs,
    uploadConcurrency: config.uploadConcurrency,
    reconcileIntervalMs: config.reconcileIntervalMs,
    chunkThresholdBytes: config.chunkThresholdBytes,
    checkpoints: { deltaShare: config.checkpointDeltaShare, maxAgeMs: config.checkpointMaxAgeMs, quietMs: config.checkpointQuietMs },
    gc: { intervalMs: config.gcIntervalMs, retentionMs: config.retentionMs, graceMs: config.gcGraceMs },
    shipImages: config.shipImages,
  };
}

/** The puller's settings (`twinlayer pull`, the agent as standby). */
export function pullSettings(config: Config) {
  return {
    group: config.group,
    stateDir: config.stateDir,
    pollIntervalMs: config.pollIntervalMs,
    downloadConcurrency: config.downloadConcurrency,
    startConcurrency: config.startConcurrency,
    twinPolicy: twinPolicyOf(config),
    trustUnsignedSpecs: config.trustUnsignedSpecs,
  };
}
