// Ships each protected container's image to the bucket (issue 12, images through the bucket), so that a standby
// needs nothing but the bucket: the config's exact bytes under its digest and each layer gzip'd under its diff id
// (KeyLayout.imageKey; the standby's loader reads that contract). Content-addressed: an image whose objects are all
// in the bucket costs a HEAD each, a layer shared by images or generations goes up once.
//
// Never on the commit path: a commit does not wait for it, and the pusher has the save read at a pace that gives way
// to commits (commit-yield.ts). One image at a time, in the background: `docker save`,
// each layer hashed and gzip'd into the state dir while it streams by (image-archive.ts), checked against the
// identity the spec carries (nothing is uploaded from an archive that is not that image), then the missing objects
// go up. A failure that would repeat (the archive is not the image, zstd layers) is logged once and not tried again
// until restart; any other backs off, doubling up to maxBackoffMs, one timer per image. A shipped image is checked
// again every recheckMs (GC or an operator may have removed objects). stop() aborts the upload in flight.
import { mkdir, rm, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import PQueue from 'p-queue';
import { ImageArchiveError, readImageArchive, verifyArchive, type DockerRuntime, type ImageIdentity } from '../docker/index.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/index.js';
import type { Bucket } from '../store/index.js';
import type { CommitYield } from './commit-yield.js';

export interface ImageShipperOptions {
  runtime: Pick<DockerRuntime, 'saveImage' | 'imageSize'>;
  bucket: Bucket;
  /** Temp files go under `<dir>` (emptied at start and after each image). */
  dir: string;
  log: Logger;
  metrics?: Metrics | undefined;
  /** A shipped image is checked again this often. Default 10 min. */
  recheckMs?: number;
  /** The first wait after a failure, doubled with each one after. Default 10 s. */
  baseBackoffMs?: number;
  /** The longest wait after failures. Default 1 h. */
  maxBackoffMs?: number;
  /** Free space left in `dir`'s filesystem beyond the image's size before a save. Default 512 MiB. */
  reserveBytes?: number;
  /** Free bytes of the filesystem holding `dir` (statfs); tests pass their own. */
  freeBytes?: (dir: string) => Promise<number>;
  /** The saved image is read at this pace: it gives way to commits (commit-yield.ts). Unset: as fast as it comes. */
  pace?: CommitYield;
}

/** The wait after the `failures`-th failure in a row (1-based): base doubled each time, capped. */
export function shipBackoffMs(failures: number, baseMs: number, maxMs: number): number {
  if (!Number.isInteger(failures) || failures < 1) throw new TypeError(`Expected \`failures\` to be a positive integer, got ${String(failures)}`);
  return Math.min(maxMs, baseMs * 2 ** Math.min(failures - 1, 40));
}

export type ImageShipState = 'queued' | 'shipping' | 'shipped' | 'waiting' | 'refused';

interface Tracked {
  identity: ImageIdentity;
  /** Each container that wants the image, with its image id: under the containerd store two ids can share a config
   *  digest, and the first may be removed while another stays (a ship saves whichever is still on the engine). */
  containers: Map<string, string>;
  state: ImageShipState;
  failures: number;
  timer: NodeJS.Timeout | null;
  /** The last failure, for status. */
  error: string | null;
}

/** What a ship of one image did (for logs and tests). */
export interface ShipResult {
  uploaded: number;
  present: number;
  bytes: number;
}

async function statfsFree(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

/** The distinct image ids the containers want, in the order they first wanted the image. */
function idsOf(t: Tracked): string[] {
  return [...new Set(t.containers.values())];
}

export class ImageShipper {
  readonly #o: ImageShipperOptions;
  /** By config digest: one image, whatever its id on this engine. */
  readonly #images = new Map<string, Tracked>();
  readonly #queue = new PQueue({ concurrency: 1 });
  readonly #life = new AbortController();
  readonly #recheckMs: number;
  readonly #baseMs: number;
  readonly #maxMs: number;
  readonly #reserve: number;

  constructor(opts: ImageShipperOptions) {
    this.#o = opts;
    this.#recheckMs = opts.recheckMs ?? 10 * 60_000;
    this.#baseMs = opts.baseBackoffMs ?? 10_000;
    this.#maxMs = opts.maxBackoffMs ?? 3600_000;
    this.#reserve = opts.reserveBytes ?? 512 * 1024 * 1024;
    for (const [name, v] of Object.entries({ recheckMs: this.#recheckMs, baseBackoffMs: this.#baseMs, maxBackoffMs: this.#maxMs, reserveBytes: this.#reserve })) {
      if (!Number.isSafeInteger(v) || v < 0) throw new TypeError(`Expected \`${name}\` to be a non-negative integer, got ${String(v)}`);
    }
  }

  /** The image of a protected container is wanted in the bucket: shipped once, soon, in the background. */
  want(container: string, imageId: string, identity: ImageIdentity): void {
    if (this.#life.signal.aborted) return;
    const known = this.#images.get(identity.configDigest);
    if (known !== undefined) {
      known.containers.set(container, imageId);
      return;
    }
    const t: Tracked = { identity, containers: new Map([[container, imageId]]), state: 'queued', failures: 0, timer: null, error: null };
    this.#images.set(identity.configDigest, t);
    this.#enqueue(t);
  }

  /** The container is no longer protected: its image is no longer shipped for it (its objects stay for GC). */
  release(container: string): void {
    for (const [digest, t] of this.#images) {
      if (!t.containers.delete(container) || t.containers.size > 0) continue;
      if (t.timer !== null) clearTimeout(t.timer);
      this.#images.delete(digest);
    }
  }

  /** Each image's state, for status and tests. */
  status(): Array<{ configDigest: string; imageIds: string[]; containers: string[]; state: ImageShipState; failures: number; error: string | null }> {
    return [...this.#images.entries()].map(([configDigest, t]) => ({ configDigest, imageIds: idsOf(t), containers: [...t.containers.keys()].sort(), state: t.state, failures: t.failures, error: t.error }));
  }

  /** Resolves once nothing is queued or shipping (timers may still be set). */
  async idle(): Promise<void> {
    await this.#queue.onIdle();
  }

  /** Aborts the ship in flight (its upload ends at once), drops what is queued and every timer; waits for the ship in
   *  flight to end and its temp files to go. */
  async stop(): Promise<void> {
    this.#life.abort(new Error('image shipper stopped'));
    for (const t of this.#images.values()) if (t.timer !== null) clearTimeout(t.timer);
    this.#queue.clear();
    await this.#queue.onIdle();
    await rm(this.#o.dir, { recursive: true, force: true }).catch(() => undefined);
  }

  #enqueue(t: Tracked): void {
    t.timer = null;
    t.state = 'queued';
    void this.#queue.add(() => this.#run(t));
  }

  #later(t: Tracked, ms: number): void {
    if (this.#life.signal.aborted || this.#images.get(t.identity.configDigest) !== t) return;
    t.timer = setTimeout(() => this.#enqueue(t), ms);
    t.timer.unref();
  }

  async #run(t: Tracked): Promise<void> {
    const signal = this.#life.signal;
    if (signal.aborted || this.#images.get(t.identity.configDigest) !== t) return;
    const ids = idsOf(t);
    const log = this.#o.log.child({ imageIds: ids, configDigest: t.identity.configDigest });
    t.state = 'shipping';
    try {
      await this.ship(ids, t.identity, signal, log);
      t.state = 'shipped';
      t.failures = 0;
      t.error = null;
      this.#later(t, this.#recheckMs);
    } catch (err) {
      if (signal.aborted) return;
      t.error = err instanceof Error ? err.message : String(err);
      if (err instanceof ImageArchiveError && err.permanent) {
        t.state = 'refused';
        log.error('image not shipped, and not tried again until restart: its saved archive is refused', { containers: [...t.containers.keys()], err });
        return;
      }
      t.failures++;
      t.state = 'waiting';
      const delayMs = shipBackoffMs(t.failures, this.#baseMs, this.#maxMs);
      log.warn('image not shipped; trying again later', { containers: [...t.containers.keys()], failures: t.failures, delayMs, err });
      this.#later(t, delayMs);
    }
  }

  /** Ships one image: HEADs its objects, and when any is missing saves the image (the first of `imageIds` still on
   *  this engine) and uploads what is missing. */
  async ship(imageIds: string | readonly string[], identity: ImageIdentity, signal: AbortSignal, log: Logger = this.#o.log): Promise<ShipResult> {
    const digests = [...new Set([identity.configDigest, ...identity.diffIds])];
    const missing = new Set<string>();
    for (const d of digests) {
      signal.throwIfAborted();
      if (!(await this.#o.bucket.images.has(d, signal))) missing.add(d);
    }
    const present = digests.length - missing.size;
    if (missing.size === 0) {
      for (let i = 0; i < present; i++) this.#o.metrics?.imageObject('present');
      log.debug('image in the bucket', { objects: present });
      return { uploaded: 0, present, bytes: 0 };
    }
    const started = Date.now();
    await mkdir(this.#o.dir, { recursive: true, mode: 0o700 });
    const candidates = typeof imageIds === 'string' ? [imageIds] : imageIds;
    let imageId: string | null = null;
    let size: number | null = null;
    for (const id of candidates) {
      size = await this.#o.runtime.imageSize(id);
      if (size !== null) {
        imageId = id;
        break;
      }
    }
    if (imageId === null || size === null) throw new Error(`image ${candidates.join(', ')} is no longer on this engine`);
    const free = await (this.#o.freeBytes ?? statfsFree)(this.#o.dir);
    if (free < size + this.#reserve) {
      throw new Error(`not enough free space to save the image in ${this.#o.dir}: ${free} bytes free, ${size + this.#reserve} needed (its ${size} bytes and ${this.#reserve} to spare)`);
    }
    log.info('shipping image', { bytes: size, missing: missing.size, of: digests.length });
    const work = join(this.#o.dir, identity.configDigest.slice('sha256:'.length, 'sha256:'.length + 16));
    await rm(work, { recursive: true, force: true });
    await mkdir(work, { recursive: true, mode: 0o700 });
    try {
      const save = await this.#o.runtime.saveImage(imageId, { signal });
      const saved = await readImageArchive(this.#o.pace?.pace(save, signal) ?? save, { dir: work, signal, imageId });
      verifyArchive(saved, identity, { imageId });
      let uploaded = 0;
      let bytes = 0;
      const done = new Set<string>();
      // Layers first: a loader that finds the config finds its layers (it checks everything either way).
      for (const layer of saved.layers) {
        if (!missing.has(layer.diffId) || done.has(layer.diffId)) continue;
        await this.#o.bucket.images.put(layer.diffId, { file: layer.file }, signal);
        done.add(layer.diffId);
        uploaded++;
        bytes += layer.gzBytes;
        this.#o.metrics?.imageObject('uploaded', layer.gzBytes);
        log.info('image layer uploaded', { diffId: layer.diffId, bytes: layer.gzBytes, tarBytes: layer.tarBytes, compression: layer.compression, ms: Date.now() - started });
      }
      if (missing.has(identity.configDigest)) {
        await this.#o.bucket.images.put(identity.configDigest, saved.configBytes, signal);
        uploaded++;
        bytes += saved.configBytes.length;
        this.#o.metrics?.imageObject('uploaded', saved.configBytes.length);
      }
      for (let i = 0; i < present; i++) this.#o.metrics?.imageObject('present');
      log.info('image shipped', { uploaded, present, bytes, ms: Date.now() - started, layout: saved.layout });
      return { uploaded, present, bytes };
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }
}
