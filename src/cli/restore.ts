// `twinlayer restore <container> [--at <RFC 3339 time> | --seq <n> [--generation <g>]] (--to <dir> | --image <name:tag>)`:
// the container's writable layer at that commit, from the bucket alone (the config's bucket and trustedKeys; no state
// dir), as `<dir>/upper` (an overlay upper dir: whiteouts as 0/0 character devices, opaque dirs with
// trusted.overlay.opaque=y) and `<dir>/volumes/<name>` (each volume the changesets carry), or as an image loaded into
// the config's engine (restore-image.ts).
//
// Every commit goes through what the standby does with it: the record's signature and its declared bounds, the
// blob's digest, the chunk list and every chunk, the whole changeset validated before it is applied (stageChangeset).
// All of it is built in a temp dir beside <dir> and renamed to <dir> at the end: a refusal leaves nothing there.
import { lstat, mkdir, mkdtemp, readdir, realpath, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { ConfigError } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { defaultLimits, stageChangeset, volumesNamed, type StageResult } from '../changeset/index.js';
import type { Logger } from '../log/logger.js';
import { declaredCommitProblem, openChunkedCommit } from '../puller/index.js';
import { asSeq, PackStore, type Bucket, type Generation } from '../store/index.js';
import { containerNameRe } from '../store/types.js';
import { planRestore, RestoreRefusedError, type RestorePlan, type RestoreTarget } from './restore-plan.js';
import { openBucket } from './runtime-deps.js';

/** The chunk index of a restore is its own: chunks of earlier commits are taken from the dir being restored. */
const RESTORE_TWIN_ID = 'restore';

const rfc3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

export interface RestoreArgs {
  container: string;
  target: RestoreTarget;
  to: string;
}

/** What `restore` is asked for: a dir (`--to`) or an image (`--image`, replacing a tag only with `--force`). */
export interface RestoreRequest {
  container: string;
  target: RestoreTarget;
  out: { kind: 'dir'; to: string } | { kind: 'image'; ref: string; force: boolean };
}

/** A Docker image reference with an explicit tag: [host[:port]/]path:tag, path components as Docker accepts them. */
const component = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
export const imageRefRe = new RegExp(`^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?${component}(?:/${component})*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`);

/** The operands and flags of `restore`, checked (a ConfigError names what is wrong). */
export function parseRestoreArgs(operands: readonly string[], flags: ReadonlyMap<string, string>): RestoreRequest {
  if (operands.length !== 1) throw new ConfigError(`restore takes one container name, got ${operands.length}${operands.length > 0 ? `: ${operands.join(' ')}` : ''}`);
  const container = operands[0]!;
  if (!containerNameRe.test(container)) throw new ConfigError(`${JSON.stringify(container)} is not a container name`);
  const to = flags.get('to');
  const image = flags.get('image');
  if (to !== undefined && image !== undefined) throw new ConfigError('--to and --image exclude each other: restore writes a dir or loads an image');
  if (flags.has('force') && image === undefined) throw new ConfigError('--force goes with --image: it replaces an image of that name:tag');
  if (image !== undefined && (image === 'true' || !imageRefRe.test(image) || image.length > 255)) {
    throw new ConfigError(`--image expects an image name with its tag, such as web-restored:1032, got ${JSON.stringify(image)}`);
  }
  if (image === undefined && (to === undefined || to === 'true' || to === '')) {
    throw new ConfigError('restore needs --to <dir> (where the upper dir and volumes are written, a new or empty dir) or --image <name:tag>');
  }
  const seqFlag = flags.get('seq');
  const atFlag = flags.get('at');
  const genFlag = flags.get('generation');
  if (seqFlag !== undefined && atFlag !== undefined) throw new ConfigError('--seq and --at exclude each other');
  if (genFlag !== undefined && seqFlag === undefined) throw new ConfigError('--generation goes with --seq: twinlayer restore <container> --seq N --generation G --to DIR');
  let target: RestoreTarget = { kind: 'newest' };
  if (seqFlag !== undefined) {
    const seq = Number(seqFlag);
    if (!/^[0-9]+$/.test(seqFlag) || !Number.isSafeInteger(seq) || seq < 1) throw new ConfigError(`--seq expects a commit seq (1 or more), got ${JSON.stringify(seqFlag)}`);
    let generation: Generation | undefined;
    if (genFlag !== undefined) {
      const g = Number(genFlag);
      if (!/^[0-9]+$/.test(genFlag) || !Number.isSafeInteger(g) || g < 1) throw new ConfigError(`--generation expects a generation number (1 or more), got ${JSON.stringify(genFlag)}`);
      generation = g as Generation;
    }
    target = { kind: 'seq', seq: asSeq(seq), ...(generation === undefined ? {} : { generation }) };
  } else if (atFlag !== undefined) {
    const at = new Date(atFlag);
    if (!rfc3339.test(atFlag) || Number.isNaN(at.getTime())) throw new ConfigError(`--at expects an RFC 3339 time such as 2026-12-06T10:32:00Z, got ${JSON.stringify(atFlag)}`);
    target = { kind: 'at', at };
  }
  return { container, target, out: image !== undefined ? { kind: 'image', ref: image, force: flags.has('force') } : { kind: 'dir', to: resolve(to!) } };
}

/** <dir> must be absent (its parent a dir) or an empty dir: nothing an operator has there is ever replaced. */
async function checkDestination(to: string): Promise<void> {
  const st = await lstat(to).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw err;
  });
  if (st === null) {
    const parent = await lstat(dirname(to)).catch(() => null);
    if (parent?.isDirectory() !== true) throw new ConfigError(`--to ${to}: its parent ${dirname(to)} is not a directory`);
    return;
  }
  if (!st.isDirectory()) throw new ConfigError(`--to ${to} exists and is not a directory (or is a symlink); give a new or empty dir`);
  if ((await readdir(to)).length > 0) throw new ConfigError(`--to ${to} is not empty; give a new or empty dir (nothing there is replaced)`);
}

export async function run(config: Config, log: Logger, operands: string[], flags: ReadonlyMap<string, string>): Promise<number> {
  const parsed = parseRestoreArgs(operands, flags);
  if (parsed.out.kind === 'image') {
    // Loaded on use, as main.ts does for each command: dockerode is not loaded for a restore into a dir.
    const { runImage } = await import('./restore-image.js');
    return runImage(config, log, parsed.container, parsed.target, parsed.out);
  }
  await checkDestination(parsed.out.to);
  // Staging refuses dirs reached through a symlink: the temp dir is made under the parent's real path.
  const args = { container: parsed.container, target: parsed.target, to: join(await realpath(dirname(parsed.out.to)), basename(parsed.out.to)) };
  const { bucket, store } = await openBucket(config, log, 'restore');
  const stop = stopOnSignals(log, 'stopping the restore; nothing is left in the destination');
  try {
    const plan = await planRestore(bucket, args.container, args.target);
    await restoreInto(bucket, plan, args, log, stop.signal);
  } finally {
    stop.dispose();
    store.destroy();
  }
  return 0;
}

/** SIGINT and SIGTERM abort the returned signal (the restore's temp dir is then removed as on any error) until
 *  dispose(). */
export function stopOnSignals(log: Logger, message: string): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => {
    log.warn(message, { signal });
    controller.abort(new Error(`stopped by ${signal}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: controller.signal,
    dispose: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

/** Applies `plan` into a temp dir beside `args.to`, then renames it there; the temp dir goes whatever happens. */
export async function restoreInto(bucket: Bucket, plan: RestorePlan, args: RestoreArgs, log: Logger, signal?: AbortSignal): Promise<void> {
  const { container, to } = args;
  const full = plan.commits[0]!;
  const last = plan.commits.at(-1)!;
  const started = Date.now();
  for (const note of plan.notes) log.warn(note, { container });
  log.info('restoring', {
    container, generation: plan.generation, seq: last.seq, publishedAt: last.publishedAt, fromFull: full.seq, commits: plan.commits.length,
    blobBytes: plan.commits.reduce((n, c) => n + c.size, 0), to,
  });
  const limits = defaultLimits;
  // Same file system as <dir>: the final rename is atomic, and staging's own temp files rename within it.
  const work = await mkdtemp(join(dirname(to), `.${basename(to)}.restore-`));
  try {
    const out = join(work, 'out');
    const upperDir = join(out, 'upper');
    const volumesRoot = join(out, 'volumes');
    const blobs = join(work, 'blobs');
    // Restored trees hold what the container held (setuid files, secrets): only root reaches them, as under Docker's root.
    await mkdir(out, { mode: 0o700 });
    await mkdir(upperDir, { mode: 0o755 });
    await mkdir(volumesRoot, { mode: 0o700 });
    await mkdir(blobs, { mode: 0o700 });
    const volumes: Record<string, string> = {};
    const packs = new PackStore(bucket.store, bucket.layout, { log: log.child({ unit: 'packs' }) });
    const totals = { files: 0, deletions: 0, bytes: 0, chunksReused: 0, chunksFetched: 0 };
    for (const [i, record] of plan.commits.entries()) {
      signal?.throwIfAborted();
      const where = { container, key: bucket.journalKey(plan.generation, record.seq) };
      const declared = declaredCommitProblem(record, limits);
      if (declared !== null) throw new RestoreRefusedError(`commit ${record.seq} refused: ${declared}`, where);
      const blob = join(blobs, `${record.digest}.${record.seq}`);
      await bucket.downloadBlob(record.digest, record.size, blob);
      try {
        for (const key of await volumesNamed(blob, limits, signal)) {
          if (volumes[key] !== undefined) continue;
          const dir = join(volumesRoot, key);
          await mkdir(dir, { mode: 0o755 });
          volumes[key] = dir;
        }
        const chunked = await openChunkedCommit({ bucket, packs, limits, indexDir: join(work, 'chunk-index') }, container, RESTORE_TWIN_ID, record, blob);
        const r: StageResult = await stageChangeset(blob, record.kind, { upperDir, tmpDir: join(work, 'tmp'), volumes }, {
          limits, log: log.child({ container }), declared: { ...record.counts, size: record.size }, ...(signal === undefined ? {} : { signal }),
          ...(chunked.stage === undefined ? {} : { chunks: chunked.stage }),
        });
        // Later commits take unchanged chunks from the files just restored instead of fetching them again.
        await chunked.adopt();
        totals.files += r.files;
        totals.deletions += r.deletions;
        totals.bytes += r.bytes;
        totals.chunksReused += r.chunks?.local ?? 0;
        totals.chunksFetched += r.chunks?.fetched ?? 0;
        log.info('commit applied', { container, seq: record.seq, kind: record.kind, step: `${i + 1}/${plan.commits.length}`, files: r.files, deletions: r.deletions, bytes: r.bytes });
      } finally {
        await rm(blob, { force: true });
      }
    }
    signal?.throwIfAborted();
    // rename(2) replaces an empty dir and fails on one that is not empty: nothing put there meanwhile is replaced.
    await rename(out, to).catch((err: NodeJS.ErrnoException) => {
      throw new RestoreRefusedError(`cannot move the restored tree into place (${err.code ?? err.message}); ${to} must be absent or empty`, { container, hint: 'nothing was written there' });
    });
    log.info('restored', {
      container, generation: plan.generation, seq: last.seq, publishedAt: last.publishedAt, fromFull: full.seq, commits: plan.commits.length,
      upperDir: join(to, 'upper'), volumes: Object.keys(volumes), ...totals, ms: Date.now() - started,
    });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
