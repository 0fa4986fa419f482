// One image out of the bucket into the engine: the config and every layer fetched and checked while they stream
// (store/image-objects.ts) into a work dir, the room for them and for docker load's copy in the engine's storage
// checked first (load-room.ts); then one `docker load` of a docker-archive streamed from those files; then the
// engine's image must have the identity asked for. Nothing reaches the engine before every byte was checked, and the
// work dir is emptied whatever happens.
import { mkdir, readdir, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { dockerArchiveManifest, packDockerArchive, repoTagOf, type DockerRuntime, type ImageIdentity } from '../docker/index.js';
import { TwinlayerError } from '../log/errors.js';
import type { Logger } from '../log/logger.js';
import { ImageNoRoomError, type Bucket, type LayerProbe } from '../store/index.js';
import { engineRoomProblem, loadRoomProblem, type DiskFree } from './load-room.js';

/** An image to load: its identity (the config digest and the diff ids a spec carries), and the reference it was run
 *  by (tagged on the engine when no image has that tag yet). */
export interface ImageWant {
  identity: ImageIdentity;
  ref: string | null;
}

export interface ImageLoadOptions {
  runtime: DockerRuntime;
  bucket: Bucket;
  log: Logger;
  /** Emptied before and after; holds the config and the uncompressed layers while they are checked and loaded. */
  workDir: string;
  /** The disks of workDir and of the engine's storage keep this many bytes free beyond the layers (default 512 MiB). */
  reserveBytes?: number;
  /** Ranged GETs of this many bytes (default 16 MiB). */
  rangeBytes?: number;
  /** No layer is larger than this uncompressed (default store/image-objects.ts DEFAULT_MAX_LAYER_BYTES). */
  maxLayerBytes?: number;
  /** What this load is for (logged). */
  context?: Record<string, unknown>;
}

export const DEFAULT_IMAGE_RESERVE_BYTES = 512 * 1024 * 1024;
/** Progress of a layer being fetched is logged at most this often. */
const PROGRESS_EVERY_MS = 5_000;

/** The engine loaded the archive but holds no image of the identity asked for. */
export class ImageLoadedOtherError extends TwinlayerError {
  constructor(configDigest: string, context: Record<string, unknown>) {
    super('IMAGE_LOADED_OTHER', `the engine loaded the image's archive but has no image of config ${configDigest} and its diff ids`, context);
  }
}

/** Removes everything in `dir` (created when missing), not `dir` itself. */
export async function emptyWorkDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  for (const name of await readdir(dir)) await rm(join(dir, name), { recursive: true, force: true });
}

async function diskFree(path: string): Promise<DiskFree> {
  const [fs, st] = await Promise.all([statfs(path), stat(path, { bigint: true })]);
  return { path, dev: st.dev, free: fs.bavail * fs.bsize };
}

const hexOf = (digest: string): string => digest.replace(/^sha256:/, '');

/** Loads `want` into the engine; returns the engine's id of it. Throws ImageObjectRefusedError / ImageNoRoomError
 *  (the bucket's objects are not the image, or there is no room), ImageLoadedOtherError, a Docker or bucket error,
 *  or the signal's reason. */
export async function loadImageFromBucket(want: ImageWant, o: ImageLoadOptions, signal: AbortSignal): Promise<string> {
  const { runtime, bucket, log, workDir } = o;
  const { configDigest, diffIds } = want.identity;
  const ctx = { ...o.context, configDigest };
  const started = Date.now();
  await emptyWorkDir(workDir);
  try {
    const config = await bucket.images.config(configDigest, diffIds, signal);
    const configName = `${hexOf(configDigest)}.json`;
    await writeFile(join(workDir, configName), config, { mode: 0o600 });
    const probes: LayerProbe[] = [];
    const unique = [...new Set(diffIds)];
    for (const diffId of unique) probes.push(await bucket.images.probeLayer(diffId, signal));
    // ISIZE gives each layer's size mod 2^32 only: this is a lower bound (exact for layers under 4 GiB). The meter of
    // fetchLayer, which looks at the free space while the layers are written, is the real guard.
    const total = probes.reduce((n, p) => n + p.leastBytes, 0);
    const reserve = o.reserveBytes ?? DEFAULT_IMAGE_RESERVE_BYTES;
    const engine = await runtime.imageStorage();
    const problem = loadRoomProblem({ layerBytes: total, reserve, store: engine.store, work: await diskFree(workDir), engine: await diskFree(engine.dir) });
    if (problem !== null) throw new ImageNoRoomError(problem, { path: workDir });
    log.info('loading an image from the bucket', { ...ctx, layers: diffIds.length, bytes: total, compressedBytes: probes.reduce((n, p) => n + p.compressedBytes, 0) });
    let done = 0;
    for (const [i, probe] of probes.entries()) {
      let loggedAt = Date.now();
      done += await bucket.images.fetchLayer(probe, join(workDir, `${hexOf(probe.diffId)}.tar`), {
        signal, reserveBytes: reserve,
        ...(o.rangeBytes === undefined ? {} : { rangeBytes: o.rangeBytes }),
        ...(o.maxLayerBytes === undefined ? {} : { maxBytes: o.maxLayerBytes }),
        onProgress: (bytes) => {
          if (Date.now() - loggedAt < PROGRESS_EVERY_MS) return;
          loggedAt = Date.now();
          log.info('image layer being fetched', { ...ctx, layer: i + 1, of: probes.length, bytes: done + bytes, totalBytes: total });
        },
      });
      log.info('image layer fetched and checked', { ...ctx, layer: i + 1, of: probes.length, diffId: probe.diffId, bytes: done, totalBytes: total });
    }
    signal.throwIfAborted();
    const late = engineRoomProblem({ layerBytes: done, reserve, store: engine.store, engine: await diskFree(engine.dir) });
    if (late !== null) throw new ImageNoRoomError(late, { path: engine.dir });
    const tag = repoTagOf(want.ref);
    // An existing tag is the operator's: it is not moved to this image (twins are created by id).
    const repoTags = tag !== null && (await runtime.imageByRef(tag)) === null ? [tag] : [];
    const files = { config: configName, layers: diffIds.map((d) => `${hexOf(d)}.tar`), repoTags };
    await writeFile(join(workDir, 'manifest.json'), dockerArchiveManifest(files));
    const fetchedAt = Date.now();
    const tar = packDockerArchive(workDir, files);
    try {
      await runtime.loadImage(tar, signal);
    } finally {
      (tar as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
    }
    signal.throwIfAborted();
    const id = await runtime.imageWithIdentity(want.identity, ctx);
    if (id === null) throw new ImageLoadedOtherError(configDigest, ctx);
    log.info('image loaded from the bucket', { ...ctx, imageId: id, tag: repoTags[0] ?? null, layers: diffIds.length, bytes: total, ms: Date.now() - started, fetchMs: fetchedAt - started, loadMs: Date.now() - fetchedAt });
    return id;
  } finally {
    await emptyWorkDir(workDir);
  }
}
