// `twinlayer ls [<container>] [--generation N | --all] [--json]`: what the bucket holds for this group, read as the
// standby reads it (signatures checked): the generations (owner, head, release), the containers of the newest one,
// the divergent tails; with a container, its commits. What an operator would otherwise dig out of the MinIO console.
import type { Config } from '../config/schema.js';
import { ConfigError } from '../config/load.js';
import type { Logger } from '../log/logger.js';
import type { Bucket, Generation } from '../store/index.js';
import { formatContainerListing, formatOverview, type CommitView, type ContainerListing, type GenerationView, type Overview, type TailView } from './ls-format.js';
import { openBucket } from './runtime-deps.js';

/** Commit records read per generation at most: a listing stays bounded whatever the bucket holds. */
const MAX_COMMITS_SHOWN = 100_000;

export async function run(config: Config, log: Logger, operands: string[], flags: ReadonlyMap<string, string>): Promise<number> {
  if (operands.length > 1) throw new ConfigError(`ls takes at most one container name, got ${operands.length}: ${operands.join(' ')}`);
  const container = operands[0];
  const generationFlag = flags.get('generation');
  const generation = generationFlag === undefined ? undefined : Number(generationFlag);
  if (generation !== undefined && !(Number.isSafeInteger(generation) && generation >= 1)) throw new ConfigError(`--generation expects a generation number (1 or more), got ${JSON.stringify(generationFlag)}`);
  if (generation !== undefined && flags.has('all')) throw new ConfigError('--generation and --all exclude each other');
  if (container === undefined && (generation !== undefined || flags.has('all'))) throw new ConfigError('--generation and --all need a container: twinlayer ls <container> --all');
  const json = flags.get('json') === 'true';

  const { bucket, store } = await openBucket(config, log, 'ls');
  try {
    const where = `${config.bucket}/${config.prefix}/${config.group}`;
    if (container === undefined) {
      const overview = await readOverview(bucket, where);
      process.stdout.write(json ? JSON.stringify(overview, null, 2) + '\n' : formatOverview(overview));
    } else {
      const listing = await readContainer(bucket, where, container, generation === undefined ? (flags.has('all') ? 'all' : 'newest') : (generation as Generation));
      process.stdout.write(json ? JSON.stringify(listing, null, 2) + '\n' : formatContainerListing(listing));
    }
  } finally {
    store.destroy();
  }
  return 0;
}

async function readGeneration(bucket: Bucket, g: Generation): Promise<GenerationView> {
  const [claim, head, release] = await Promise.all([bucket.readClaim(g), bucket.readHead(g), bucket.readRelease(g)]);
  const problems: string[] = [];
  if (head.status === 'refused') problems.push(`head refused: ${head.reason}`);
  const h = head.status === 'ok' ? head.head : null;
  if (claim === null && h === null) problems.push('neither a claim nor a head the group signed');
  return {
    generation: g,
    owner: claim?.host ?? h?.writer ?? null,
    claimedAt: claim?.claimedAt ?? null,
    from: claim === null ? null : { generation: claim.from.generation, containers: claim.from.containers },
    head: h === null ? null : { seq: h.seq, updatedAt: h.updatedAt, containers: h.containers },
    release: release === null ? null : { host: release.host, releasedAt: release.releasedAt, reason: release.reason },
    problems,
  };
}

async function readTails(bucket: Bucket, container?: string): Promise<TailView[]> {
  const tails: TailView[] = [];
  for (const item of await bucket.listDivergent()) {
    if ('error' in item) {
      if (container === undefined) tails.push({ key: item.key, error: item.error });
      continue;
    }
    const r = item.record;
    if (container !== undefined && r.container !== container) continue;
    tails.push({
      key: item.key, host: r.host, generation: r.generation, claimGeneration: r.claimGeneration, container: r.container, fromSeq: r.fromSeq,
      lastShippedSeq: r.lastShippedSeq, digest: r.digest, size: r.size, files: r.counts.files, deletions: r.counts.deletions, savedAt: r.savedAt, reason: r.reason,
    });
  }
  return tails;
}

async function readOverview(bucket: Bucket, where: string): Promise<Overview> {
  const generations: GenerationView[] = [];
  // Newest first, as an operator reads them.
  for (const g of (await bucket.listGenerations()).reverse()) generations.push(await readGeneration(bucket, g));
  const newest = generations.find((v) => v.problems.length === 0 && (v.head !== null || v.claimedAt !== null)) ?? null;
  const specs = await bucket.listSpecNames();
  return { bucket: where, generations, newest: newest?.generation ?? null, containers: newest?.head?.containers ?? {}, specs, tails: await readTails(bucket) };
}

async function readContainer(bucket: Bucket, where: string, container: string, which: Generation | 'newest' | 'all'): Promise<ContainerListing> {
  const listed = (await bucket.listGenerations()).reverse();
  let chosen: Generation[];
  if (which === 'all') chosen = listed;
  else if (which === 'newest') {
    // The newest generation whose head names the container (a generation opened since may not have it yet).
    chosen = [];
    for (const g of listed) {
      const head = await bucket.readHead(g);
      if (head.status === 'ok' && head.head.containers[container] !== undefined) {
        chosen = [g];
        break;
      }
    }
  } else {
    if (!listed.includes(which)) throw new ConfigError(`generation ${which} is not in ${where} (generations there: ${[...listed].sort((x, y) => x - y).join(', ') || 'none'})`);
    chosen = [which];
  }
  const generations: ContainerListing['generations'] = [];
  for (const g of chosen) {
    const commits: CommitView[] = [];
    const unreadable: string[] = [];
    let truncated = false;
    for await (const item of bucket.listRecords(g, 0, { maxKeys: MAX_COMMITS_SHOWN, onTruncated: () => (truncated = true) })) {
      if ('error' in item) {
        // Which container an unreadable record was for is unknown: show them all, so none is missed.
        unreadable.push(`seq ${item.seq}: ${item.error}`);
        continue;
      }
      const r = item.record;
      if (r.container !== container) continue;
      commits.push({
        seq: r.seq, parentSeq: r.parentSeq, kind: r.kind, publishedAt: r.publishedAt, firstWriteAt: r.firstWriteAt, size: r.size, files: r.counts.files,
        deletions: r.counts.deletions, bytes: r.counts.bytes, chunkedFiles: r.chunks?.files ?? 0, writer: r.writer, digest: r.digest,
      });
    }
    generations.push({ ...(await readGeneration(bucket, g)), commits, unreadable, truncated });
  }
  return { bucket: where, container, generations, tails: await readTails(bucket, container) };
}
