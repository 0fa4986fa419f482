// Builds the outside-world seams from a validated config: the bucket (checked reachable) and the Docker runtime.
import { DockerRuntime } from '../docker/index.js';
import type { Config } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import { Bucket, S3BlobStore } from '../store/index.js';

export async function openBucket(config: Config, log: Logger): Promise<{ bucket: Bucket; store: S3BlobStore }> {
  const store = new S3BlobStore({
    bucket: config.bucket,
    region: config.region,
    endpoint: config.endpoint,
    pathStyle: config.pathStyle,
    log,
  });
  await store.checkReachable();
  return { bucket: new Bucket(store, { prefix: config.prefix, group: config.group, log }), store };
}

export function openDocker(config: Config, log: Logger): DockerRuntime {
  return new DockerRuntime({ socketPath: config.dockerSocket, log });
}
