// The process's metrics: one prom-client registry that the units report into and that the hook exposes at
// GET /metrics. Units below the hook import this module only (never the HTTP layer); every label takes values from
// a fixed set or from container names, which the configuration bounds: no label ever carries a digest, key or path.
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';

import { ageSeconds, type ReplicationSource } from './replication.js';

/** Bucket requests by HTTP method, as S3 bills them. */
export const bucketRequestKinds = ['GET', 'PUT', 'LIST', 'HEAD', 'DELETE'] as const;
export type BucketRequestKind = (typeof bucketRequestKinds)[number];

/** What went wrong, by kind; each is counted once per occurrence, at the place that logs it. */
export const failureKinds = [
  /** A bucket request failed after its retries (unreachable, 5xx, denied...). */
  'bucket',
  /** Primary: building, uploading or publishing a changeset failed; it is retried with backoff. */
  'ship',
  /** Primary: writing the head pointer failed; retried in the background, pullers do not see new commits meanwhile. */
  'head_write',
  /** Standby: a poll of the bucket failed. */
  'poll',
  /** Standby: staging a commit failed (I/O, disk, engine); retried by a later poll. */
  'stage',
  /** Standby: a changeset was refused for what it holds; the container waits for a full checkpoint. */
  'refused',
  /** Standby: a commit's parent is missing from the journal; the container waits for a full checkpoint. */
  'journal_gap',
] as const;
export type FailureKind = (typeof failureKinds)[number];

export const commitKinds = ['delta', 'full'] as const;
export type CommitKind = (typeof commitKinds)[number];

/** What GC deletes, by kind (declared for the GC unit of issue 12; nothing reports them before it exists). */
export type GcObjectKind = 'record' | 'blob' | 'chunk' | 'generation' | 'divergent' | 'image';

/** How often the event loop's lag is sampled (ms). A stall longer than this is always seen (the sample after it is
 *  late by as much); a shorter one only when a sample falls due inside it, so its percentiles are rougher. */
export const EVENT_LOOP_SAMPLE_MS = 100;

type Labels<T extends string> = Partial<Record<T, string | number>>;

export class Metrics {
  readonly registry = new Registry();
  readonly #sources = new Set<ReplicationSource>();
  readonly #failures: Counter<'kind'>;
  readonly #requests: Counter<'kind'>;
  readonly #bytes: Counter<'direction'>;
  readonly #published: Counter<'kind'>;
  readonly #staged: Counter<'kind'>;
  readonly #gcRuns: Counter<'result'>;
  readonly #gcObjects: Counter<'kind'>;
  readonly #gcBytes: Counter<'kind'>;
  readonly #imageObjects: Counter<'result'>;
  readonly #imageBytes: Counter;

  constructor(opts: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    // Process metrics (CPU, memory, event-loop lag, handles) under their usual unprefixed names. The event-loop lag
    // is sampled every EVENT_LOOP_SAMPLE_MS, not prom-client's 10 ms: a timer waking the process 100 times a second
    // cost an idle pusher or puller 0.3 % of a core by itself, a third of its idle budget.
    if (opts.processMetrics !== false) collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });

    const perContainer = (name: string, help: string, value: (s: ReplicationSource, now: number) => Array<{ labels: Labels<'container' | 'side'>; value: number }>): void => {
      const sources = this.#sources;
      new Gauge({
        name, help, labelNames: ['container', 'side'], registers,
        collect() {
          this.reset();
          const now = Date.now();
          for (const s of sources) for (const v of value(s, now)) this.set(v.labels, v.value);
        },
      });
    };
    perContainer('twinlayer_replication_lag_seconds',
      'Replication lag per container in seconds, 0 when caught up. side="primary": since the oldest change seen and not yet published; side="standby": since the publication of the oldest commit in the bucket not yet staged.',
      (s, now) => s.views(now).map((v) => ({ labels: { container: v.container, side: s.side }, value: v.lagMs / 1000 })));
    perContainer('twinlayer_replication_lag_commits',
      'Replication lag per container in commits, 0 when caught up. side="primary": changesets not yet published (at most 2: bursts coalesce); side="standby": commits in the bucket not yet staged.',
      (s, now) => s.views(now).map((v) => ({ labels: { container: v.container, side: s.side }, value: v.lagCommits })));
    perContainer('twinlayer_last_commit_age_seconds',
      'Seconds since the newest commit of the container was published (primary: by this host; standby: the newest seen in the bucket). Absent until this process knows one.',
      (s, now) => s.views(now).flatMap((v) => (v.lastCommitAt === null ? [] : [{ labels: { container: v.container, side: s.side }, value: ageSeconds(now, v.lastCommitAt) }])));
    perContainer('twinlayer_checkpoint_age_seconds',
      'Seconds since the newest full checkpoint of the container was published. Absent until this process knows one.',
      (s, now) => s.views(now).flatMap((v) => (v.lastCheckpointAt === null ? [] : [{ labels: { container: v.container, side: s.side }, value: ageSeconds(now, v.lastCheckpointAt) }])));

    this.#failures = new Counter({ name: 'twinlayer_failures_total', help: `Failures by kind: ${failureKinds.join(', ')} (see the README).`, labelNames: ['kind'], registers });
    this.#requests = new Counter({ name: 'twinlayer_bucket_requests_total', help: 'Requests sent to the bucket by kind (HTTP method; every attempt counts, retries included, as S3 bills them).', labelNames: ['kind'], registers });
    this.#bytes = new Counter({ name: 'twinlayer_bucket_bytes_total', help: 'Object bytes shipped to (up) and from (down) the bucket: bodies of successful PUTs and GETs.', labelNames: ['direction'], registers });
    this.#published = new Counter({ name: 'twinlayer_commits_published_total', help: 'Commits this host published to the bucket (primary), by kind.', labelNames: ['kind'], registers });
    this.#staged = new Counter({ name: 'twinlayer_commits_staged_total', help: 'Commits this host staged into its twins (standby), by kind.', labelNames: ['kind'], registers });
    // Every fixed label value starts at 0, so rate() and increase() see the first occurrence.
    for (const kind of failureKinds) this.#failures.inc({ kind }, 0);
    for (const kind of bucketRequestKinds) this.#requests.inc({ kind }, 0);
    for (const direction of ['up', 'down']) this.#bytes.inc({ direction }, 0);
    for (const kind of commitKinds) {
      this.#published.inc({ kind }, 0);
      this.#staged.inc({ kind }, 0);
    }

    // Garbage collection (retention) is reported here once it exists; until then these have no samples at all.
    this.#gcRuns = new Counter({ name: 'twinlayer_gc_runs_total', help: 'Garbage-collection runs of the bucket by result (ok; failed; stopped: its host stopped being primary, or a newer generation was opened). No samples until GC has run in this process.', labelNames: ['result'], registers });
    this.#gcObjects = new Counter({ name: 'twinlayer_gc_deleted_objects_total', help: 'Objects garbage collection deleted from the bucket, by kind (record, blob, chunk, generation, divergent, image).', labelNames: ['kind'], registers });
    this.#gcBytes = new Counter({ name: 'twinlayer_gc_deleted_bytes_total', help: 'Bytes of the objects garbage collection deleted from the bucket, by kind.', labelNames: ['kind'], registers });

    // Images shipped through the bucket by the primary (issue 12): config and layer objects, and their bytes.
    this.#imageObjects = new Counter({ name: 'twinlayer_image_objects_total', help: 'Image objects (configs and gzip\'d layers) the primary checked for its protected containers\' images, by result: uploaded, or present (already in the bucket).', labelNames: ['result'], registers });
    this.#imageBytes = new Counter({ name: 'twinlayer_image_bytes_shipped_total', help: 'Bytes of the image objects the primary uploaded (also counted in twinlayer_bucket_bytes_total).', registers });
    for (const result of ['uploaded', 'present']) this.#imageObjects.inc({ result }, 0);
    this.#imageBytes.inc(0);
  }

  /** Reports until the returned function is called (a pusher or puller, while it runs). */
  addReplicationSource(source: ReplicationSource): () => void {
    this.#sources.add(source);
    return () => void this.#sources.delete(source);
  }

  failure(kind: FailureKind): void {
    this.#failures.inc({ kind });
  }

  bucketRequest(kind: BucketRequestKind): void {
    this.#requests.inc({ kind });
  }

  bucketBytes(direction: 'up' | 'down', bytes: number): void {
    if (bytes > 0) this.#bytes.inc({ direction }, bytes);
  }

  commitPublished(kind: CommitKind): void {
    this.#published.inc({ kind });
  }

  commitStaged(kind: CommitKind): void {
    this.#staged.inc({ kind });
  }

  gcRun(result: 'ok' | 'failed' | 'stopped'): void {
    this.#gcRuns.inc({ result });
  }

  gcDeleted(kind: GcObjectKind, objects: number, bytes: number): void {
    this.#gcObjects.inc({ kind }, objects);
    this.#gcBytes.inc({ kind }, bytes);
  }

  imageObject(result: 'uploaded' | 'present', bytes = 0): void {
    this.#imageObjects.inc({ result });
    if (bytes > 0) this.#imageBytes.inc(bytes);
  }

  /** The Prometheus text exposition of everything registered. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** A gauge that is 1 for the current state and 0 for the others, read at each scrape. */
export function registerStateGauge(metrics: Metrics, o: { name: string; help: string; label: string; values: readonly string[]; current: () => string }): void {
  new Gauge({
    name: o.name, help: o.help, labelNames: [o.label], registers: [metrics.registry],
    collect() {
      const now = o.current();
      for (const v of o.values) this.set({ [o.label]: v }, v === now ? 1 : 0);
    },
  });
}

/** A gauge read at each scrape: the samples `read` returns, none when it returns none. (A gauge without labels always
 *  has a sample, 0 by default: one that may have no value takes a label.) */
export function registerReadGauge<T extends string>(metrics: Metrics, o: { name: string; help: string; labelNames: readonly T[]; read: () => Array<{ labels: Labels<T>; value: number }> }): void {
  new Gauge({
    name: o.name, help: o.help, labelNames: o.labelNames, registers: [metrics.registry],
    collect() {
      this.reset();
      for (const s of o.read()) this.set(s.labels, s.value);
    },
  });
}

/** A counter the caller increments; labels must take values from a bounded set. */
export function registerCounter<T extends string>(metrics: Metrics, o: { name: string; help: string; labelNames: readonly T[] }): Counter<T> {
  return new Counter({ name: o.name, help: o.help, labelNames: o.labelNames, registers: [metrics.registry] });
}
