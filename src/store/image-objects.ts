// An image's objects in the bucket (issue 12, images through the bucket): what the primary's shipper asks of them
// (has, put: content-addressed like blobs, so a PUT over the same key writes the same bytes) and the standby's reads,
// every byte checked while it streams.
// The objects (keys.ts imageKey): an image's config under its config digest, its exact bytes; each layer under its
// diff id, the layer tar gzip'd. Nothing here trusts the bucket: a config must hash to the digest it is read by and
// name exactly the diff ids asked for; a layer must gunzip (a truncated or corrupt gzip is refused), to a size its gzip
// trailer agrees with and no byte past what its compressed size can hold or the max allowed (a bomb stops at the first
// byte past it), and to the diff id it is read by. ISIZE is the size mod 2^32 only, so a layer over 4 GiB is bounded while it streams by what its compressed
// bytes can hold (and the max layer size), and its end must agree with ISIZE mod 2^32; the diff id is the integrity
// check. The compressed bytes are never written to disk: ranged GETs feed gunzip, whose output is hashed, counted
// and written to the one file a layer becomes, while a meter checks the disk keeps its reserve.
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rm, statfs } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';

import { z } from 'zod';

import { TwinlayerError } from '../log/errors.js';
import { readRange, type BlobStore } from './blob-store.js';
import type { DeleteGate } from './delete-gate.js';
import type { KeyLayout } from './keys.js';
import { asDigest } from './types.js';

const MIB = 1024 * 1024;
/** An image config is JSON of a few KiB (its history makes it grow); anything larger is not one. */
export const MAX_IMAGE_CONFIG_BYTES = 4 * MIB;
/** Ranged GETs of this many bytes, one held in memory at a time. */
export const DEFAULT_IMAGE_RANGE_BYTES = 16 * MIB;
/** No layer is larger than this uncompressed, whatever its trailer says (a sane bound). */
export const DEFAULT_MAX_LAYER_BYTES = 64 * 1024 * MIB;
const GZIP_TRAILER_BYTES = 8;
const ISIZE_WRAP = 2 ** 32;
/** The free space is looked at again after this many bytes written. */
const METER_EVERY_BYTES = 8 * MIB;

const sha256Digest = z.string().regex(/^sha256:[0-9a-f]{64}$/, 'sha256:<64 hex>');
const imageConfigSchema = z.looseObject({
  rootfs: z.looseObject({ type: z.literal('layers'), diff_ids: z.array(sha256Digest).max(1024) }),
});

/** An image object refused: what is in the bucket is not the image asked for (or not there). The object may be put
 *  back right, so a refusal is retried later, never at once. */
export class ImageObjectRefusedError extends TwinlayerError {
  constructor(reason: string, context: { key: string; digest: string }, options?: { cause?: unknown }) {
    super('IMAGE_OBJECT_REFUSED', `image object refused: ${reason}`, context, options);
  }
}

/** The disk of the work dir has not the room a load needs, or fell below the reserve during one. */
export class ImageNoRoomError extends TwinlayerError {
  constructor(reason: string, context: { path: string }) {
    super('IMAGE_NO_ROOM', reason, { ...context, hint: 'free space on the state dir\'s file system' });
  }
}

export interface LayerProbe {
  /** The diff id, sha256:<hex>. */
  diffId: string;
  key: string;
  /** The gzip'd object's size. */
  compressedBytes: number;
  /** The gzip trailer's ISIZE: the uncompressed size mod 2^32. */
  isize: number;
  /** The smallest uncompressed size consistent with ISIZE that a gzip of `compressedBytes` can hold: a lower bound
   *  (a layer over 4 GiB may be any multiple of 2^32 more). */
  leastBytes: number;
}

export interface FetchLayerOptions {
  /** Aborts the GET in flight and the pipeline; the file is removed. */
  signal?: AbortSignal;
  /** Ranged GETs of this many bytes (DEFAULT_IMAGE_RANGE_BYTES). */
  rangeBytes?: number;
  /** The disk of the file must keep this many bytes free while it is written. */
  reserveBytes: number;
  /** Told the uncompressed bytes written so far, now and then. */
  onProgress?: (bytes: number) => void;
}

/** Deflate expands at most about 1032 to 1: no gzip of n bytes holds more than this uncompressed. */
function mostHeldBy(compressedBytes: number): number {
  return compressedBytes * 1033 + 1024;
}

/** The least uncompressed size a gzip's ISIZE trailer (size mod 2^32) declares: the smallest size of that residue that
 *  a gzip of `compressedBytes` can hold (a lower bound: a larger layer may be any multiple of 2^32 more) (deflate never grows data by more than a few bytes per 16 KiB block, nor shrinks
 *  it past about 1032 to 1); null when none can. Pure. */
export function declaredSize(isize: number, compressedBytes: number): number | null {
  const least = Math.max(0, Math.floor(compressedBytes * (1 - 1 / 2048)) - 1024);
  const size = isize >= least ? isize : isize + Math.ceil((least - isize) / ISIZE_WRAP) * ISIZE_WRAP;
  return size <= mostHeldBy(compressedBytes) ? size : null;
}

/** The most uncompressed bytes a layer of `compressedBytes` may stream before it is refused: what the compressed bytes
 *  can hold, and never more than `maxBytes`. Pure. */
export function layerByteCap(compressedBytes: number, maxBytes: number, isize: number): number {
  // The largest size within both bounds that the trailer allows: exact (the ISIZE itself) for any layer that cannot
  // reach 4 GiB, so a bomb whose trailer lies stops at the first byte past it, not at the format's limit.
  const cap = Math.min(maxBytes, mostHeldBy(compressedBytes));
  if (cap < isize) return cap;
  return isize + Math.floor((cap - isize) / ISIZE_WRAP) * ISIZE_WRAP;
}

/** Whether `bytes` uncompressed agrees with a gzip trailer's ISIZE (the size mod 2^32). Pure. */
export function agreesWithIsize(bytes: number, isize: number): boolean {
  return bytes % ISIZE_WRAP === isize;
}

/** A pass-through that hashes and counts what goes by, refuses the first byte past `limit`, and every METER_EVERY_BYTES
 *  checks that the disk of `path` keeps `reserve` bytes free. */
class VerifyMeter extends Transform {
  readonly #hash = createHash('sha256');
  readonly #limit: number;
  readonly #path: string;
  readonly #reserve: number;
  readonly #onProgress: ((bytes: number) => void) | undefined;
  readonly #refuse: (reason: string) => Error;
  bytes = 0;
  #metered = 0;

  constructor(o: { limit: number; path: string; reserve: number; onProgress?: ((bytes: number) => void) | undefined; refuse: (reason: string) => Error }) {
    super();
    this.#limit = o.limit;
    this.#path = o.path;
    this.#reserve = o.reserve;
    this.#onProgress = o.onProgress;
    this.#refuse = o.refuse;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.#limit) {
      cb(this.#refuse(`it gunzips to more than the ${this.#limit} bytes its compressed size can hold or a layer may have`));
      return;
    }
    this.#hash.update(chunk);
    if (this.bytes - this.#metered < METER_EVERY_BYTES) {
      cb(null, chunk);
      return;
    }
    this.#metered = this.bytes;
    this.#onProgress?.(this.bytes);
    statfs(this.#path).then((fs) => {
      const free = fs.bavail * fs.bsize;
      if (free < this.#reserve) cb(new ImageNoRoomError(`the disk fell to ${free} bytes free while a layer was written, below the reserve of ${this.#reserve}`, { path: this.#path }));
      else cb(null, chunk);
    }, (err: unknown) => cb(err as Error));
  }

  digest(): string {
    return `sha256:${this.#hash.digest('hex')}`;
  }
}

/** The image objects of a group's bucket. A digest is sha256:<hex> (or the bare hex). */
export class ImageObjects {
  readonly #store: BlobStore;
  readonly #layout: KeyLayout;
  readonly #gate: DeleteGate;

  /** `gate`: the bucket's (Bucket.gate), so that a GC run of this process spares what the shipper names again. */
  constructor(store: BlobStore, layout: KeyLayout, gate: DeleteGate) {
    this.#store = store;
    this.#layout = layout;
    this.#gate = gate;
  }

  keyOf(digest: string): string {
    return this.#layout.imageKey(asDigest(digest.replace(/^sha256:/, '')));
  }

  /** Whether the object is in the bucket (a HEAD) and stays: one a GC run of this process is about to delete counts
   *  as missing, and is rescued from that run (delete-gate.ts) for the put that follows. */
  async has(digest: string, signal?: AbortSignal): Promise<boolean> {
    const key = this.keyOf(digest);
    if (await this.#gate.beforeWrite(key)) return false;
    return this.#store.exists(key, { signal });
  }

  /** Uploads the object; `signal` ends the upload in flight. A GC run of this process that doomed the key leaves it. */
  async put(digest: string, body: Buffer | { file: string }, signal?: AbortSignal): Promise<void> {
    const key = this.keyOf(digest);
    await this.#gate.beforeWrite(key);
    await this.#store.put(key, body, { signal });
  }

  /** The config stored under `configDigest`, checked: its bytes hash to it, it is JSON, and its rootfs.diff_ids are
   *  exactly `diffIds`. Returns its bytes (to be given to the engine as they are). */
  async config(configDigest: string, diffIds: readonly string[], signal?: AbortSignal): Promise<Buffer> {
    const key = this.keyOf(configDigest);
    const ctx = { key, digest: configDigest };
    const read = await readRange(this.#store, key, 0, MAX_IMAGE_CONFIG_BYTES + 1, signal);
    if (read.status !== 'ok') throw new ImageObjectRefusedError('the image config is not in the bucket', ctx);
    if (read.body.length > MAX_IMAGE_CONFIG_BYTES) throw new ImageObjectRefusedError(`the image config is larger than ${MAX_IMAGE_CONFIG_BYTES} bytes`, ctx);
    const got = `sha256:${createHash('sha256').update(read.body).digest('hex')}`;
    if (got !== configDigest) throw new ImageObjectRefusedError(`the image config's bytes have digest ${got}`, ctx);
    let raw: unknown;
    try {
      raw = JSON.parse(read.body.toString('utf8'));
    } catch (cause) {
      throw new ImageObjectRefusedError('the image config is not JSON', ctx, { cause });
    }
    const parsed = imageConfigSchema.safeParse(raw);
    if (!parsed.success) throw new ImageObjectRefusedError(`the image config does not parse: ${parsed.error.issues[0]?.message ?? 'invalid'}`, ctx);
    const named = parsed.data.rootfs.diff_ids;
    if (named.length !== diffIds.length || named.some((d, i) => d !== diffIds[i])) {
      throw new ImageObjectRefusedError(`the image config names the layers ${named.join(', ')}, not the ${diffIds.length} the spec names`, ctx);
    }
    return read.body;
  }

  /** A layer object's sizes, from its first bytes (a gzip header) and its last eight (the gzip trailer). */
  async probeLayer(diffId: string, signal?: AbortSignal): Promise<LayerProbe> {
    const key = this.keyOf(diffId);
    const ctx = { key, digest: diffId };
    const head = await readRange(this.#store, key, 0, 10, signal);
    if (head.status !== 'ok') throw new ImageObjectRefusedError('the layer is not in the bucket', ctx);
    if (head.body.length < 10 || head.body[0] !== 0x1f || head.body[1] !== 0x8b) throw new ImageObjectRefusedError('the layer object is not gzip', ctx);
    const size = head.objectSize;
    if (size === null) throw new ImageObjectRefusedError('the store did not say the layer object\'s size', ctx);
    if (size < 10 + GZIP_TRAILER_BYTES) throw new ImageObjectRefusedError(`the layer object is ${size} bytes, too short for a gzip`, ctx);
    const tail = await readRange(this.#store, key, size - GZIP_TRAILER_BYTES, GZIP_TRAILER_BYTES, signal);
    if (tail.status !== 'ok' || tail.body.length !== GZIP_TRAILER_BYTES) throw new ImageObjectRefusedError('the layer object changed while it was read', ctx);
    const isize = tail.body.readUInt32LE(4);
    const declared = declaredSize(isize, size);
    if (declared === null) throw new ImageObjectRefusedError(`the gzip trailer declares ${isize} bytes (mod 2^32), which no gzip of ${size} bytes holds`, ctx);
    return { diffId, key, compressedBytes: size, isize, leastBytes: declared };
  }

  /**
   * Streams the layer into `file` (uncompressed), checking every byte on the way: it must gunzip, to no more than
   * layerByteCap, to a size that agrees with its ISIZE, and to the diff id. Anything else removes the file and throws
   * ImageObjectRefusedError (ImageNoRoomError when the disk falls below the reserve; the signal's reason when aborted).
   * Returns the bytes written.
   */
  async fetchLayer(probe: LayerProbe, file: string, o: FetchLayerOptions & { maxBytes?: number }): Promise<number> {
    const ctx = { key: probe.key, digest: probe.diffId };
    const maxBytes = o.maxBytes ?? DEFAULT_MAX_LAYER_BYTES;
    if (probe.leastBytes > maxBytes) throw new ImageObjectRefusedError(`the layer declares at least ${probe.leastBytes} bytes uncompressed, more than the ${maxBytes} allowed`, ctx);
    const rangeBytes = o.rangeBytes ?? DEFAULT_IMAGE_RANGE_BYTES;
    const store = this.#store;
    const signal = o.signal;
    async function* ranges(): AsyncGenerator<Buffer> {
      for (let at = 0; at < probe.compressedBytes;) {
        const read = await readRange(store, probe.key, at, Math.min(rangeBytes, probe.compressedBytes - at), signal);
        if (read.status !== 'ok' || read.body.length === 0) throw new ImageObjectRefusedError(`the layer object ended at ${at} bytes, not at the ${probe.compressedBytes} it had`, ctx);
        if (read.objectSize !== null && read.objectSize !== probe.compressedBytes) throw new ImageObjectRefusedError('the layer object changed while it was read', ctx);
        at += read.body.length;
        yield read.body;
      }
    }
    const meter = new VerifyMeter({ limit: layerByteCap(probe.compressedBytes, maxBytes, probe.isize), path: dirname(file), reserve: o.reserveBytes, onProgress: o.onProgress, refuse: (reason) => new ImageObjectRefusedError(reason, ctx) });
    try {
      await pipeline(ranges, createGunzip(), meter, createWriteStream(file, { flags: 'wx', mode: 0o600 }), ...(signal === undefined ? [] : [{ signal }] as const));
      if (!agreesWithIsize(meter.bytes, probe.isize)) throw new ImageObjectRefusedError(`it gunzips to ${meter.bytes} bytes, which its gzip trailer's ${probe.isize} (the size mod 2^32) does not agree with`, ctx);
      const got = meter.digest();
      if (got !== probe.diffId) throw new ImageObjectRefusedError(`the layer's uncompressed bytes have digest ${got}`, ctx);
      o.onProgress?.(meter.bytes);
      return meter.bytes;
    } catch (err) {
      await rm(file, { force: true });
      if (signal?.aborted === true) throw signal.reason;
      if (err instanceof TwinlayerError) throw err;
      // zlib's errors (a truncated or corrupt gzip, a bad CRC) say what is wrong with the object.
      if (typeof (err as { code?: unknown }).code === 'string' && String((err as { code: string }).code).startsWith('Z_')) {
        throw new ImageObjectRefusedError(`it does not gunzip: ${(err as Error).message}`, ctx, { cause: err });
      }
      if ((err as { code?: unknown }).code === 'ERR_STREAM_PREMATURE_CLOSE' || /unexpected end of file/.test((err as Error).message)) {
        throw new ImageObjectRefusedError(`it does not gunzip: ${(err as Error).message}`, ctx, { cause: err });
      }
      throw err;
    }
  }
}
