// Reads the tar `docker save` writes of one image, as a stream, into what the bucket stores of it (issue 12, images
// through the bucket): the config's exact bytes, and each layer gzip'd in a temp file with the sha256 of its
// uncompressed tar (its diff id). Two layouts: Docker 20.10's legacy one (manifest.json, <id>.json, <x>/layer.tar)
// and Docker 25+/containerd-store OCI one (index.json, blobs/sha256/..., manifest.json beside it since 25), whose
// layers may come gzip'd. The archive is read once, in its own order (manifest.json comes last in the legacy
// layout): every large file is taken for a layer while it streams by, small ones are held in memory until the
// manifest says what they are. Nothing is trusted: JSON is zod-parsed, paths are resolved inside the archive, and
// the caller checks the result against the image's identity (verifyArchive) before anything is uploaded.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import { z } from 'zod';
import { TwinlayerError, type ErrorContext } from '../log/errors.js';
import { hashTap } from '../streams/hash-tap.js';
import type { ImageIdentity } from './image-identity.js';

/** The archive cannot be used. `permanent` when saving the same image again gives the same answer (an identity that
 *  differs, a compression we cannot read): the shipper then stops trying until it restarts. */
export class ImageArchiveError extends TwinlayerError {
  readonly permanent: boolean;
  constructor(message: string, context: ErrorContext, opts: { permanent: boolean; cause?: unknown }) {
    super(opts.permanent ? 'IMAGE_ARCHIVE_REFUSED' : 'IMAGE_ARCHIVE_FAILED', message, context, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.permanent = opts.permanent;
  }
}

export type LayerCompression = 'none' | 'gzip';

/** One layer of the archive, gzip'd in `file`. */
export interface ArchiveLayer {
  /** sha256:<hex> of the uncompressed tar. */
  diffId: string;
  file: string;
  /** Bytes of `file` (what the bucket stores). */
  gzBytes: number;
  /** Bytes of the uncompressed tar. */
  tarBytes: number;
  /** How the archive held it: a gzip'd layer is kept as it came when it is one member whose trailer fits the tar. */
  compression: LayerCompression;
}

export interface SavedImage {
  /** sha256:<hex> of `configBytes`. */
  configDigest: string;
  configBytes: Buffer;
  /** The config's rootfs.diff_ids. */
  configDiffIds: string[];
  /** Bottom first, as the manifest lists them. */
  layers: ArchiveLayer[];
  layout: 'legacy' | 'oci';
}

export interface ReadArchiveOptions {
  /** Where layers are written (the caller removes it). */
  dir: string;
  signal?: AbortSignal | undefined;
  /** For errors: the image being read. */
  imageId?: string;
  /** Files up to this size are held in memory (manifests, configs, small layers). Default 4 MiB. */
  smallBytes?: number;
  /** Entries read at most. Default 100 000. */
  maxEntries?: number;
  /** Bytes of small files held in memory at most, all together. Default 256 MiB. */
  maxHeldBytes?: number;
}

const digestSchema = z.string().regex(/^sha256:[0-9a-f]{64}$/, 'sha256:<64 hex>');
/** A path inside the archive: relative, no `..`. */
const archivePath = z.string().regex(/^(?!\/)(?!.*(^|\/)\.\.(\/|$))[A-Za-z0-9._/:+-]{1,512}$/, 'a relative path in the archive');
const legacyManifestSchema = z.array(z.looseObject({ Config: archivePath, Layers: z.array(archivePath).max(1024) })).min(1).max(64);
const descriptorSchema = z.looseObject({ mediaType: z.string().optional(), digest: digestSchema, size: z.number().int().nonnegative().optional() });
const ociIndexSchema = z.looseObject({ schemaVersion: z.literal(2), manifests: z.array(descriptorSchema).min(1).max(256) });
const ociManifestSchema = z.looseObject({ schemaVersion: z.literal(2), config: descriptorSchema, layers: z.array(descriptorSchema).max(1024) });
const imageConfigSchema = z.looseObject({ rootfs: z.looseObject({ type: z.literal('layers'), diff_ids: z.array(digestSchema).max(1024) }) });

const gzipMagic = Buffer.from([0x1f, 0x8b]);
const zstdMagic = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** Whether the gzip file's trailer (its last 8 bytes: CRC32, then ISIZE, little-endian) describes the whole tar. The
 *  standby checks ISIZE against the layer's size: a multi-member gzip (eStargz, bgzip) or one with bytes after its
 *  member ends has a trailer that does not (the last member's CRC differs from the whole's but by chance). */
async function trailerFitsWhole(file: string, gzBytes: number, tar: { bytes: number; crc: number }): Promise<boolean> {
  if (gzBytes < 18) return false; // smaller than a gzip header and trailer
  const fh = await open(file, 'r');
  try {
    const trailer = Buffer.alloc(8);
    const { bytesRead } = await fh.read(trailer, 0, 8, gzBytes - 8);
    return bytesRead === 8 && trailer.readUInt32LE(0) === tar.crc && trailer.readUInt32LE(4) === tar.bytes % 2 ** 32;
  } finally {
    await fh.close();
  }
}

/** The first bytes of a stream, and the stream with them put back. */
async function peek(source: AsyncIterable<Buffer>, want: number): Promise<{ head: Buffer; rest: AsyncIterable<Buffer> }> {
  const it = source[Symbol.asyncIterator]();
  const got: Buffer[] = [];
  let n = 0;
  while (n < want) {
    const r = await it.next();
    if (r.done === true) break;
    got.push(r.value);
    n += r.value.length;
  }
  const head = Buffer.concat(got);
  async function* rest(): AsyncIterable<Buffer> {
    if (head.length > 0) yield head;
    for (let r = await it.next(); r.done !== true; r = await it.next()) yield r.value;
  }
  return { head, rest: rest() };
}

/**
 * One layer's bytes as the archive holds them into `file`, gzip'd: a plain tar is hashed and gzip'd, a gzip'd one is
 * written as it is, then read back through gunzip to hash it; it is kept as it came only when it is one gzip member
 * whose trailer fits the whole tar (what the standby checks), else gzip'd again. The diff id is the sha256 of the tar
 * either way. Every stream is inside a pipeline, so a failed write (ENOSPC) rejects and closes them all.
 */
export async function gzipLayer(source: AsyncIterable<Buffer>, file: string, context: ErrorContext, signal?: AbortSignal): Promise<Omit<ArchiveLayer, 'file'>> {
  const { head, rest } = await peek(source, zstdMagic.length);
  const opts = signal === undefined ? {} : { signal };
  try {
    if (head.subarray(0, zstdMagic.length).equals(zstdMagic)) {
      throw new ImageArchiveError('a layer of the saved image is zstd-compressed, which twinlayer does not read', { ...context, hint: 'ship the image from an engine that saves it uncompressed or gzip\'d' }, { permanent: true });
    }
    if (head.subarray(0, gzipMagic.length).equals(gzipMagic)) {
      const stored = hashTap();
      const tar = hashTap({ crc32: true });
      await pipeline(rest, stored, createWriteStream(file), opts);
      await pipeline(createReadStream(file), createGunzip(), tar, new Writable({ write: (_c, _e, cb) => cb() }), opts);
      if (await trailerFitsWhole(file, stored.bytes(), { bytes: tar.bytes(), crc: tar.crc() })) {
        return { diffId: tar.digest(), gzBytes: stored.bytes(), tarBytes: tar.bytes(), compression: 'gzip' };
      }
      const again = `${file}.again`;
      const gz = hashTap();
      try {
        await pipeline(createReadStream(file), createGunzip(), createGzip(), gz, createWriteStream(again), opts);
        await rename(again, file);
      } finally {
        await rm(again, { force: true });
      }
      return { diffId: tar.digest(), gzBytes: gz.bytes(), tarBytes: tar.bytes(), compression: 'gzip' };
    }
    const tar = hashTap();
    const gz = hashTap();
    // Output in 1 MiB chunks, mapped on their own and unmapped when freed, not zlib's 16 KiB ones from the main heap:
    // with the save's reads freed as they go (streams/read-release.ts) they were what was left spreading it
    // (bench/results/2026-12-08-rss5-probe.md).
    await pipeline(rest, tar, createGzip({ chunkSize: 1024 * 1024 }), gz, createWriteStream(file), opts);
    return { diffId: tar.digest(), gzBytes: gz.bytes(), tarBytes: tar.bytes(), compression: 'none' };
  } catch (err) {
    await rm(file, { force: true });
    if (err instanceof TwinlayerError || signal?.aborted === true) throw err;
    throw new ImageArchiveError(`a layer of the saved image could not be read: ${(err as Error).message}`, context, { permanent: false, cause: err });
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

type Held = { kind: 'small'; bytes: Buffer } | { kind: 'layer'; layer: ArchiveLayer } | { kind: 'link'; target: string };

/**
 * Reads a `docker save` stream of one image. Each regular file larger than `smallBytes` is gzip'd into `dir` as it
 * streams by (a layer: nothing else in a saved image is that large); smaller ones are held and gzip'd only when the
 * manifest names them as layers. Does not check the result against an identity: see verifyArchive.
 */
export async function readImageArchive(stream: NodeJS.ReadableStream, opts: ReadArchiveOptions): Promise<SavedImage> {
  const smallBytes = opts.smallBytes ?? 4 * 1024 * 1024;
  const maxEntries = opts.maxEntries ?? 100_000;
  const maxHeld = opts.maxHeldBytes ?? 256 * 1024 * 1024;
  let heldBytes = 0;
  const context: ErrorContext = opts.imageId === undefined ? {} : { imageId: opts.imageId };
  const held = new Map<string, Held>();
  let entries = 0;
  let layerFiles = 0;
  let failure: Error | null = null;
  const pending: Array<Promise<void>> = [];
  const parser = new Parser({ strict: true });
  /** The entry being read: ended at once when the stream fails, so its reader does not wait for the rest. */
  let current: ReadEntry | null = null;

  const take = async (entry: ReadEntry, path: string): Promise<void> => {
    if (entry.type === 'SymbolicLink' || entry.type === 'Link') {
      const link = entry.linkpath ?? '';
      // A symlink is relative to its own directory, a hard link to the archive's root.
      held.set(path, { kind: 'link', target: entry.type === 'Link' ? posix.normalize(link) : posix.join(posix.dirname(path), link) });
      entry.resume();
      return;
    }
    if (entry.type !== 'File' && entry.type !== 'OldFile' && entry.type !== 'ContiguousFile') {
      entry.resume();
      return;
    }
    if ((entry.size ?? 0) <= smallBytes) {
      heldBytes += entry.size ?? 0;
      if (heldBytes > maxHeld) throw new ImageArchiveError(`the saved image has more than ${maxHeld} bytes of small files`, { ...context, path }, { permanent: true });
      const chunks: Buffer[] = [];
      for await (const c of entry as AsyncIterable<Buffer>) chunks.push(c);
      held.set(path, { kind: 'small', bytes: Buffer.concat(chunks) });
      return;
    }
    const file = join(opts.dir, `layer-${layerFiles++}.tar.gz`);
    const layer = await gzipLayer(entry as AsyncIterable<Buffer>, file, { ...context, path }, opts.signal);
    held.set(path, { kind: 'layer', layer: { ...layer, file } });
  };

  parser.on('entry', (entry: ReadEntry) => {
    if (failure !== null || ++entries > maxEntries) {
      failure ??= new ImageArchiveError(`the saved image has more than ${maxEntries} entries`, context, { permanent: true });
      entry.resume();
      return;
    }
    const path = posix.normalize(entry.path).replace(/^\.\//, '').replace(/\/$/, '');
    const ok = archivePath.safeParse(path);
    if (!ok.success) {
      failure = new ImageArchiveError(`the saved image has an entry outside it: ${JSON.stringify(entry.path.slice(0, 200))}`, context, { permanent: true });
      entry.resume();
      return;
    }
    // Entries come one at a time: the parser holds the next until this one's body is read (its backpressure).
    current = entry;
    pending.push(take(entry, path).catch((err: unknown) => {
      failure ??= asError(err);
      entry.resume();
    }));
  });
  try {
    await new Promise<void>((resolve, reject) => {
      const signal = opts.signal;
      const onAbort = (): void => {
        reject(asError(signal?.reason));
        (stream as Readable).destroy();
      };
      if (signal?.aborted === true) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      const done = (err?: unknown): void => {
        signal?.removeEventListener('abort', onAbort);
        if (err === undefined) resolve();
        else reject(asError(err));
      };
      parser.on('end', () => done());
      parser.on('error', (err: unknown) => done(err));
      stream.on('error', (err: unknown) => done(err));
      stream.pipe(parser);
    });
  } catch (err) {
    (current as ReadEntry | null)?.destroy();
    // The engine's save ends with its connection: a refused archive must not hold it (nor the socket) open.
    (stream as Readable).destroy();
    failure ??= opts.signal?.aborted === true ? asError(opts.signal.reason) : new ImageArchiveError(`the saved image could not be read: ${(err as Error).message}`, context, { permanent: false, cause: err });
  }
  await Promise.all(pending);
  if (failure !== null) throw failure;
  return resolveArchive(held, opts.dir, context, opts.signal);
}

/** What a path names, links followed (a few at most). */
function lookup(held: ReadonlyMap<string, Held>, path: string, context: ErrorContext): Exclude<Held, { kind: 'link' }> {
  let p = path;
  for (let hops = 0; hops < 8; hops++) {
    const h = held.get(p);
    if (h === undefined) throw new ImageArchiveError(`the saved image lacks ${JSON.stringify(p)}`, { ...context, path }, { permanent: false });
    if (h.kind !== 'link') return h;
    p = h.target;
  }
  throw new ImageArchiveError(`the saved image links ${JSON.stringify(path)} in a loop`, { ...context, path }, { permanent: true });
}

/** JSON of the archive, or a permanent refusal: the same save gives the same bytes. */
function jsonOf(bytes: Buffer, what: string, context: ErrorContext): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new ImageArchiveError(`${what} of the saved image is not JSON`, context, { permanent: true, cause: err });
  }
}

function parseJson<T>(bytes: Buffer, schema: z.ZodType<T>, what: string, context: ErrorContext): T {
  const raw = jsonOf(bytes, what, context);
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new ImageArchiveError(`${what} of the saved image is not what Docker writes: ${parsed.error.issues[0]?.message ?? 'invalid'}`, context, { permanent: true });
  return parsed.data;
}

function blobPath(digest: string): string {
  return `blobs/sha256/${digest.slice('sha256:'.length)}`;
}

/** The config and layer paths the archive's manifest names: manifest.json when there is one (legacy, and Docker
 *  25+ beside its OCI index), else index.json, its manifests followed down to the image's. */
function manifestOf(held: ReadonlyMap<string, Held>, context: ErrorContext): { config: string; layers: string[]; layout: SavedImage['layout'] } {
  const small = (path: string): Buffer => {
    const h = lookup(held, path, context);
    if (h.kind !== 'small') throw new ImageArchiveError(`${JSON.stringify(path)} of the saved image is too large for a manifest or config`, { ...context, path }, { permanent: true });
    return h.bytes;
  };
  const oci = held.has('index.json') || held.has('oci-layout');
  if (held.has('manifest.json')) {
    const manifest = parseJson(small('manifest.json'), legacyManifestSchema, 'manifest.json', context);
    if (manifest.length !== 1) throw new ImageArchiveError(`manifest.json of the saved image names ${manifest.length} images, not one`, context, { permanent: true });
    const m = manifest[0]!;
    return { config: m.Config, layers: m.Layers, layout: oci ? 'oci' : 'legacy' };
  }
  if (!held.has('index.json')) throw new ImageArchiveError('the saved image has neither manifest.json nor index.json', context, { permanent: true });
  // An index names manifests or further indexes (the containerd store's image index); one image was saved, so one
  // manifest is reached, through at most a few levels.
  let docs = parseJson(small('index.json'), ociIndexSchema, 'index.json', context).manifests;
  for (let depth = 0; depth < 4; depth++) {
    const found: Array<z.infer<typeof ociManifestSchema>> = [];
    const next: Array<z.infer<typeof descriptorSchema>> = [];
    for (const d of docs) {
      if (!held.has(blobPath(d.digest))) continue; // another platform's, not saved
      const bytes = small(blobPath(d.digest));
      if (sha256(bytes) !== d.digest) throw new ImageArchiveError(`blob ${d.digest} of the saved image has another digest`, context, { permanent: true });
      const m = ociManifestSchema.safeParse(jsonOf(bytes, `blob ${d.digest}`, context));
      if (m.success) found.push(m.data);
      else next.push(...parseJson(bytes, ociIndexSchema, `index ${d.digest}`, context).manifests);
    }
    if (found.length > 1) throw new ImageArchiveError(`the saved image holds ${found.length} manifests, not one`, context, { permanent: true });
    if (found.length === 1) return { config: blobPath(found[0]!.config.digest), layers: found[0]!.layers.map((l) => blobPath(l.digest)), layout: 'oci' };
    docs = next;
  }
  throw new ImageArchiveError('index.json of the saved image leads to no manifest', context, { permanent: true });
}

async function resolveArchive(held: ReadonlyMap<string, Held>, dir: string, context: ErrorContext, signal?: AbortSignal): Promise<SavedImage> {
  const m = manifestOf(held, context);
  const config = lookup(held, m.config, context);
  if (config.kind !== 'small') throw new ImageArchiveError('the config of the saved image is too large', { ...context, path: m.config }, { permanent: true });
  const parsed = parseJson(config.bytes, imageConfigSchema, 'the config', { ...context, path: m.config });
  const layers: ArchiveLayer[] = [];
  for (const [i, path] of m.layers.entries()) {
    const h = lookup(held, path, context);
    if (h.kind === 'layer') {
      layers.push(h.layer);
      continue;
    }
    const file = join(dir, `small-layer-${i}.tar.gz`);
    layers.push({ ...(await gzipLayer(Readable.from([h.bytes]), file, { ...context, path }, signal)), file });
  }
  return { configDigest: sha256(config.bytes), configBytes: config.bytes, configDiffIds: parsed.rootfs.diff_ids, layers, layout: m.layout };
}

/** Pure: why the archive is not the image `want` names (config digest, the config's diff ids, each layer's
 *  computed diff id), or null when it is. */
export function archiveMismatch(saved: Pick<SavedImage, 'configDigest' | 'configDiffIds' | 'layers'>, want: ImageIdentity): string | null {
  if (saved.configDigest !== want.configDigest) return `its config has digest ${saved.configDigest}, the image's identity says ${want.configDigest}`;
  const same = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);
  if (!same(saved.configDiffIds, want.diffIds)) return `its config lists ${saved.configDiffIds.length} diff ids that differ from the image's ${want.diffIds.length}`;
  const computed = saved.layers.map((l) => l.diffId);
  if (computed.length !== want.diffIds.length) return `it holds ${computed.length} layers, the image ${want.diffIds.length}`;
  const bad = computed.findIndex((d, i) => d !== want.diffIds[i]);
  return bad === -1 ? null : `layer ${bad} hashes to ${computed[bad] ?? ''}, the image's diff id is ${want.diffIds[bad] ?? ''}`;
}

/** Throws a permanent ImageArchiveError unless the archive is the image `want` names. */
export function verifyArchive(saved: SavedImage, want: ImageIdentity, context: ErrorContext): void {
  const why = archiveMismatch(saved, want);
  if (why !== null) throw new ImageArchiveError(`the saved image is not the image its identity names: ${why}`, context, { permanent: true });
}
