// `twinlayer restore <container> ... --image <name:tag> [--force]`: the container at a commit as a Docker image loaded
// into the config's engine, so `docker run <name:tag>` shows its filesystem as it was.
//
// The image is the base image (the one the container's spec in the bucket names, found on this engine by id or by
// identity, on either image store) with ONE layer on top: the upper dir `restore --to` would write, converted to OCI
// form (changeset/oci-layer.ts). Not one layer per changeset: a changeset names chunked files by their chunk list
// (an OCI applier would extract them empty), carries the container's volumes beside its layer, and a delta's files
// are assembled from chunks of the files before it — a restore assembles all of that once, so the layer it writes is
// plain OCI that any engine applies the same, and an image of a 10 000-commit history is not 10 000 layers deep.
//
// The archive is built from `docker save` of the base image: its manifest.json gets the new layer and a config that is
// the base config with the container's own settings (Cmd, Entrypoint, Env, WorkingDir, User, ExposedPorts, Labels
// without twinlayer's, StopSignal, Healthcheck), rootfs.diff_ids and history extended. Everything lives in one temp dir
// under TMPDIR, removed whatever happens; a refusal (signature, digest, a changeset a standby refuses) comes before
// anything is given to the engine. An image that has the name:tag already is replaced only with --force.
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { create as createTar, extract } from 'tar';
import { z } from 'zod';
import { ConfigError } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { writeOciLayer } from '../changeset/index.js';
import { ENABLE_LABEL, OWN_LABELS, specDigest, twinSpecSchema, type DockerRuntime, type TwinSpec } from '../docker/index.js';
import type { Logger } from '../log/logger.js';
import { ImageLoadedOtherError, loadImageFromBucket } from '../puller/image-load.js';
import { ImageNoRoomError, ImageObjectRefusedError, type Bucket } from '../store/index.js';
import { planRestore, RestoreRefusedError, type RestorePlan, type RestoreTarget } from './restore-plan.js';
import { restoreInto, stopOnSignals } from './restore.js';
import { openBucket, openDocker } from './runtime-deps.js';

const digest = z.string().regex(/^sha256:[0-9a-f]{64}$/);
/** A path inside the saved archive: relative, no `..`. */
const archivePath = z.string().regex(/^(?!\/)(?!.*(^|\/)\.\.(\/|$))[A-Za-z0-9._/:-]{1,512}$/, 'a relative path in the archive');
const manifestSchema = z.array(z.looseObject({ Config: archivePath, RepoTags: z.array(z.string()).nullable().optional(), Layers: z.array(archivePath).max(1024) })).length(1);
const imageConfigSchema = z.looseObject({
  config: z.record(z.string(), z.unknown()).optional(),
  rootfs: z.looseObject({ type: z.literal('layers'), diff_ids: z.array(digest).max(1024) }),
  history: z.array(z.record(z.string(), z.unknown())).max(4096).optional(),
});

export interface ImageOut {
  ref: string;
  force: boolean;
}

async function readSpec(bucket: Bucket, container: string): Promise<TwinSpec> {
  const raw = await bucket.getSpec(container);
  if (raw === undefined) throw new RestoreRefusedError('no spec.json of this container in the bucket: its image and config are not known', { container, key: bucket.specKey(container) });
  const spec = twinSpecSchema.safeParse(raw);
  if (!spec.success) throw new RestoreRefusedError(`spec.json is invalid: ${spec.error.issues[0]?.message ?? 'invalid'}`, { container, key: bucket.specKey(container) });
  if (spec.data.name !== container) throw new RestoreRefusedError(`spec.json names another container (${JSON.stringify(spec.data.name)})`, { container, key: bucket.specKey(container) });
  return spec.data;
}

/** The base image's config with the container's settings where the spec has them (the container's own values: Docker
 *  merged the image's defaults into them when it was created). */
function imageConfigOf(base: Record<string, unknown>, spec: TwinSpec, config: Config): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  const set = (key: string, value: unknown): void => {
    if (value === null || value === undefined) delete out[key];
    else out[key] = value;
  };
  set('Cmd', spec.cmd);
  set('Entrypoint', spec.entrypoint);
  set('Env', spec.env);
  set('WorkingDir', spec.workingDir);
  set('User', spec.user);
  set('ExposedPorts', spec.exposedPorts.length === 0 ? null : Object.fromEntries(spec.exposedPorts.map((p) => [p, {}])));
  // A container run from the image must not opt in to protection, nor look like a twin, by a label it inherited.
  const dropped = new Set([config.label, ENABLE_LABEL, ...OWN_LABELS]);
  const labels = Object.fromEntries(Object.entries(spec.labels).filter(([k]) => !dropped.has(k)));
  set('Labels', Object.keys(labels).length === 0 ? null : labels);
  if (spec.config?.StopSignal !== undefined) set('StopSignal', spec.config.StopSignal);
  if (spec.config?.Healthcheck !== undefined) set('Healthcheck', spec.config.Healthcheck);
  return out;
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export async function runImage(config: Config, log: Logger, container: string, target: RestoreTarget, out: ImageOut): Promise<number> {
  const docker = openDocker(config, log);
  const existing = await docker.imageByRef(out.ref);
  if (existing !== null && !out.force) {
    throw new ConfigError(`image ${out.ref} exists on the engine (${existing.id}); name another or give --force to move the tag to the restored image`);
  }
  const { bucket, store } = await openBucket(config, log, 'restore');
  const stop = stopOnSignals(log, 'stopping the restore; nothing is loaded');
  try {
    const spec = await readSpec(bucket, container);
    const baseId = (await docker.localImageFor(spec)) ?? (await loadBase(docker, bucket, spec, log, stop.signal));
    const plan = await planRestore(bucket, container, target);
    const last = plan.commits.at(-1)!;
    if (last.specDigest !== undefined && last.specDigest !== specDigest(spec)) {
      log.warn('the container\'s spec in the bucket is newer than the commit restored (it was reconfigured or recreated since): its image and settings are used', { container, seq: last.seq });
    }
    await buildAndLoad(docker, bucket, plan, { container, spec, baseId, out, config }, log, stop.signal);
  } finally {
    stop.dispose();
    store.destroy();
  }
  return 0;
}

/** The base image out of the bucket (images through the bucket), checked as a standby checks it, when the engine has
 *  not got it: by the identity the spec names, in a temp dir removed after. */
async function loadBase(docker: DockerRuntime, bucket: Bucket, spec: TwinSpec, log: Logger, signal: AbortSignal): Promise<string> {
  const container = spec.name;
  const identity = spec.imageIdentity;
  const missing = `the engine has not got the container's image ${spec.image} (${spec.imageId}${identity === undefined ? '' : `, config ${identity.configDigest}`})`;
  if (identity === undefined) throw new RestoreRefusedError(`${missing}, and its spec names no image identity to load it from the bucket by; load it into this engine, then restore again`, { container });
  log.info('the engine has not got the container\'s image; loading it from the bucket', { container, image: spec.image, configDigest: identity.configDigest });
  const work = await mkdtemp(join(tmpdir(), 'twinlayer-restore-base-'));
  try {
    return await loadImageFromBucket({ identity, ref: spec.image }, { runtime: docker, bucket, log, workDir: work, context: { container } }, signal);
  } catch (err) {
    if (err instanceof ImageObjectRefusedError || err instanceof ImageNoRoomError || err instanceof ImageLoadedOtherError) {
      throw new RestoreRefusedError(`${missing}, and loading it from the bucket failed: ${err.message}; load it into this engine, then restore again`, { container });
    }
    throw err;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

interface BuildInputs {
  container: string;
  spec: TwinSpec;
  baseId: string;
  out: ImageOut;
  config: Config;
}

async function buildAndLoad(docker: DockerRuntime, bucket: Bucket, plan: RestorePlan, i: BuildInputs, log: Logger, signal: AbortSignal): Promise<void> {
  const { container, out } = i;
  const last = plan.commits.at(-1)!;
  const started = Date.now();
  const work = await mkdtemp(join(tmpdir(), 'twinlayer-restore-image-'));
  try {
    const tree = join(work, 'tree');
    await restoreInto(bucket, plan, { container, target: { kind: 'seq', seq: last.seq, generation: plan.generation }, to: tree }, log, signal);
    const restoredAt = Date.now();
    const volumes = await readdir(join(tree, 'volumes'));
    if (volumes.length > 0) log.warn('the container\'s volumes are not part of an image; `restore --to <dir>` gives their content', { container, volumes });

    const archive = join(work, 'archive');
    await mkdir(archive, { mode: 0o700 });
    await pipeline(await docker.saveImage(i.baseId), extract({ cwd: archive, strict: true }));
    const savedAt = Date.now();
    signal.throwIfAborted();
    const manifestRaw: unknown = JSON.parse(await readFile(join(archive, 'manifest.json'), 'utf8'));
    const manifest = manifestSchema.safeParse(manifestRaw);
    if (!manifest.success) throw new RestoreRefusedError(`docker save of ${i.baseId} gave a manifest.json this restore does not know: ${manifest.error.issues[0]?.message ?? ''}`, { container });
    const baseEntry = manifest.data[0]!;
    const baseConfigBytes = await readFile(join(archive, baseEntry.Config));
    const baseConfig = imageConfigSchema.safeParse(JSON.parse(baseConfigBytes.toString('utf8')) as unknown);
    if (!baseConfig.success) throw new RestoreRefusedError(`the config of ${i.baseId} in its docker save does not parse: ${baseConfig.error.issues[0]?.message ?? ''}`, { container });
    const baseLayers = (await docker.imageByRef(i.baseId))?.diffIds ?? [];
    const diffIds = baseConfig.data.rootfs.diff_ids;
    if (diffIds.length !== baseLayers.length || diffIds.some((d, n) => d !== baseLayers[n]) || diffIds.length !== baseEntry.Layers.length) {
      throw new RestoreRefusedError(`docker save of ${i.baseId} holds other layers than the engine names for it`, { container });
    }

    const layerDir = join(archive, 'twinlayer-restore');
    await mkdir(layerDir);
    const layerTmp = join(layerDir, 'layer.tar');
    const layer = await writeOciLayer(join(tree, 'upper'), layerTmp);
    const layerAt = Date.now();
    signal.throwIfAborted();
    const layerPath = `twinlayer-restore/layer.tar`;
    const created = last.publishedAt;
    const imageConfig = {
      ...baseConfig.data,
      created,
      config: imageConfigOf(baseConfig.data.config ?? {}, i.spec, i.config),
      rootfs: { type: 'layers', diff_ids: [...diffIds, layer.diffId] },
      history: [
        ...(baseConfig.data.history ?? []),
        { created, created_by: `twinlayer restore ${container} --seq ${last.seq} --generation ${plan.generation}`, comment: `the writable layer of ${container} at generation ${plan.generation} seq ${last.seq}, published ${last.publishedAt}` },
      ],
    };
    const configBytes = Buffer.from(JSON.stringify(imageConfig));
    const configName = `${sha256(configBytes)}.json`;
    await writeFile(join(archive, configName), configBytes);
    // Only what the new manifest names goes to the engine: not the base's index.json (it names the base image).
    await writeFile(join(archive, 'manifest.json'), JSON.stringify([{ Config: configName, RepoTags: [out.ref], Layers: [...baseEntry.Layers, layerPath] }]));
    const files = ['manifest.json', configName, ...new Set([...baseEntry.Layers, layerPath])];
    signal.throwIfAborted();
    // node-tar's Pack is a Minipass stream: piped through a PassThrough, dockerode gets a Node stream.
    await docker.loadImage(createTar({ cwd: archive, follow: true, portable: true }, files).pipe(new PassThrough()));
    const loadedAt = Date.now();
    const image = await docker.imageByRef(out.ref);
    const want = [...diffIds, layer.diffId];
    if (image === null || image.diffIds.length !== want.length || image.diffIds.some((d, n) => d !== want[n])) {
      throw new RestoreRefusedError(`the engine loaded the archive but ${out.ref} is not the image built (its layers: ${image?.diffIds.join(', ') ?? 'none'})`, { container });
    }
    log.info('image loaded', {
      container, image: out.ref, imageId: image.id, base: i.spec.image, baseId: i.baseId, generation: plan.generation, seq: last.seq, publishedAt: last.publishedAt,
      layerDiffId: layer.diffId, layerBytes: layer.size, layerEntries: layer.entries, ms: Date.now() - started,
      phasesMs: { restore: restoredAt - started, save: savedAt - restoredAt, layer: layerAt - savedAt, load: loadedAt - layerAt },
    });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
