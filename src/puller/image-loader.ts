// The standby's image loader: a twin whose image this engine lacks gets it from the bucket (image-load.ts), by the
// identity its signed spec names. One image is loaded at a time, and the containers of one image share its load. The
// twin keeper asks every poll while it holds such a twin (request(): it never waits), so a finished load is seen at the
// next poll. A refused or failed load is tried again after a backoff (the object may be put back), never at once. A
// finalize pauses the loader: the load in flight is aborted (its requests to the bucket and the engine with it) and no
// other starts until resume(): a promotion neither waits for a load nor competes with one for the disk and the engine.
import type { Logger } from '../log/logger.js';
import { emptyWorkDir, loadImageFromBucket, type ImageLoadOptions, type ImageWant } from './image-load.js';

export interface ImageLoaderOptions extends Omit<ImageLoadOptions, 'context' | 'log'> {
  log: Logger;
  /** The first wait after a failed load; doubled after each, up to retryMaxMs. Default 10 s. */
  retryBaseMs?: number;
  /** Default 10 min. */
  retryMaxMs?: number;
}

type Job = {
  want: ImageWant;
  containers: Set<string>;
  failures: number;
  /** Why the last try failed, and when the next may start. */
  refused: { reason: string; retryAt: number } | null;
  /** When a container last asked for it: one nobody asks for any more (its spec names another image now) is dropped. */
  askedAt: number;
};

/** A job nobody asked for this long is dropped (the keeper asks every poll while it holds a twin for it). */
const FORGET_AFTER_MS = 5 * 60_000;

const short = (digest: string): string => digest.replace(/^sha256:/, '').slice(0, 12);

export class ImageLoader {
  readonly #o: ImageLoaderOptions;
  /** By config digest. */
  readonly #jobs = new Map<string, Job>();
  #current: { configDigest: string; controller: AbortController } | null = null;
  #pump: Promise<void> | null = null;
  #paused = false;
  #stopped = false;

  constructor(opts: ImageLoaderOptions) {
    this.#o = opts;
  }

  /** Empties the work dir (a load a crash interrupted left its files there). */
  async open(): Promise<void> {
    await emptyWorkDir(this.#o.workDir);
  }

  /** What is being done about the image `container` needs, in words for its status; starts loading it when nothing
   *  else is loading and it is not waiting out a backoff. Never waits. */
  request(container: string, want: ImageWant): string {
    const key = want.identity.configDigest;
    let job = this.#jobs.get(key);
    if (job === undefined) {
      job = { want, containers: new Set(), failures: 0, refused: null, askedAt: 0 };
      this.#jobs.set(key, job);
    }
    job.askedAt = Date.now();
    job.containers.add(container);
    this.#kick();
    const what = `image ${want.ref ?? ''} (config ${short(key)}) is not on this engine`;
    if (this.#current?.configDigest === key) return `${what}; loading it from the bucket`;
    if (job.refused !== null) return `${what}; loading it from the bucket was refused: ${job.refused.reason}; tried again from ${new Date(job.refused.retryAt).toISOString()}`;
    if (this.#paused) return `${what}; loading it from the bucket waits (a promotion paused the loader)`;
    return `${what}; waiting to load it from the bucket (one image at a time)`;
  }

  /** Aborts the load in flight (its requests to the bucket and the engine) and starts none until resume(). Does not
   *  wait: settled() says when the aborted load has cleaned up. */
  pause(): void {
    this.#paused = true;
    this.#current?.controller.abort(new Error('image load aborted: a promotion paused the loader'));
  }

  resume(): void {
    this.#paused = false;
    this.#kick();
  }

  /** Resolves when no load is in flight. */
  async settled(): Promise<void> {
    while (this.#pump !== null) await this.#pump;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.pause();
    await this.settled();
  }

  #kick(): void {
    if (this.#pump !== null || this.#paused || this.#stopped) return;
    this.#pump = this.#run().finally(() => {
      this.#pump = null;
    });
  }

  #next(): Job | null {
    const now = Date.now();
    for (const [key, job] of this.#jobs) {
      if (now - job.askedAt > FORGET_AFTER_MS) this.#jobs.delete(key);
      else if (job.refused === null || job.refused.retryAt <= now) return job;
    }
    return null;
  }

  async #run(): Promise<void> {
    for (let job = this.#next(); job !== null && !this.#paused && !this.#stopped; job = this.#next()) {
      const key = job.want.identity.configDigest;
      const controller = new AbortController();
      this.#current = { configDigest: key, controller };
      const containers = [...job.containers].sort();
      try {
        await loadImageFromBucket(job.want, { ...this.#o, context: { containers, image: job.want.ref } }, controller.signal);
        this.#jobs.delete(key);
      } catch (err) {
        if (controller.signal.aborted) {
          // Not the image's fault: tried again after resume(), without a backoff.
          this.#o.log.info('image load aborted; it starts again when the loader resumes', { configDigest: key, containers });
        } else {
          job.failures++;
          const base = this.#o.retryBaseMs ?? 10_000;
          const waitMs = Math.min(this.#o.retryMaxMs ?? 600_000, base * 2 ** Math.min(job.failures - 1, 20));
          const reason = err instanceof Error ? err.message : String(err);
          job.refused = { reason, retryAt: Date.now() + waitMs };
          this.#o.log.error('image not loaded from the bucket; tried again after a backoff', { configDigest: key, containers, waitMs, failures: job.failures, err });
        }
      } finally {
        this.#current = null;
      }
    }
  }
}
