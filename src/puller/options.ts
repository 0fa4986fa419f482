// What a Puller is given, and what one poll reports.
import type { Limits } from '../changeset/index.js';
import type { DockerRuntime, TwinPolicy } from '../docker/index.js';
import type { Logger } from '../log/logger.js';
import type { Bucket } from '../store/index.js';
import type { Metrics } from '../metrics/index.js';
import type { ImageLoaderOptions } from './image-loader.js';

export interface PullerOptions {
  runtime: DockerRuntime;
  bucket: Bucket;
  log: Logger;
  group: string;
  stateDir: string;
  pollIntervalMs: number;
  downloadConcurrency: number;
  startConcurrency: number;
  /** Look for a newer generation every this many polls (fencing a stale primary). */
  generationCheckEvery?: number;
  /** Check every twin (create missing ones, notice replaced ones) every this many polls, and whenever the head
   *  moved. Staging checks its own twin right before writing, so this only bounds how soon a removed twin comes back. */
  twinCheckEvery?: number;
  /** At most this many journal records are read in one poll. */
  maxRecordsPerPoll?: number;
  /** A container that cannot stage keeps at most this many commits queued, then waits for its next full checkpoint
   *  (journal-follower.ts). Default DEFAULT_MAX_QUEUED. */
  maxQueued?: number;
  /** Bounds on changesets (default: the changeset unit's defaults, see src/changeset/limits.ts). */
  limits?: Limits;
  /** What this host lets a trusted spec ask for (twin-keeper.ts). Default DEFAULT_TWIN_POLICY. */
  twinPolicy?: TwinPolicy;
  /** Honour privileged fields of unsigned specs (twin-keeper.ts). Default false. */
  trustUnsignedSpecs?: boolean;
  /** How images this engine lacks are loaded from the bucket (image-loader.ts): the disk reserve kept beyond the
   *  layers, the ranged GETs' size, the bound on a layer, the backoff after a failed load. */
  imageLoad?: Partial<Pick<ImageLoaderOptions, 'reserveBytes' | 'rangeBytes' | 'maxLayerBytes' | 'retryBaseMs' | 'retryMaxMs'>>;
  /** Where the replication lag, commit ages and failures of this standby are reported while it runs. */
  metrics?: Metrics | undefined;
}

export interface PollReport {
  ms: number;
  bucketReachable: boolean;
  staged: number;
  timedOut: boolean;
  error: string | null;
}
