// `twinlayer ls [<container>] [--generation N | --all] [--json]`: what the bucket holds for this group, read as the
// standby reads it (signatures checked): the generations (owner, head, release), the containers of the newest one,
// the divergent tails; with a container, its commits. What an operator would otherwise dig out of the MinIO console.
import type { Config } from '../config/schema.js';
import { ConfigError } from '../config/load.js';
import type { Logger } from '../log/logger.js';
import { commitChain, type Bucket, type CommitRecord, type Generation, type JournalItem, type Seq } from '../store/index.js';
import {
  formatContainerListing, formatOverview, type CommitView, type ContainerListing, type GenerationView, type LeftOut, type Overview, type TailView,
} from './ls-format.js';
import { openBucket } from './runtime-deps.js';
import { terminalJson } from './terminal-text.js';

/** Commits of the container read per generation at most, following its parentSeq links down from its head (one GET
 *  each): a listing stays bounded whatever the bucket holds. */
const MAX_COMMITS_SHOWN = 10_000;
/** Records past a generation's head read at most (published while its head write is retried, or someone's junk). */
const MAX_PAST_HEAD = 1000;
/** Divergent tails and spec names shown at most. */
const MAX_TAILS_SHOWN = 1000;
const MAX_SPECS_SHOWN = 10_000;

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
      process.stdout.write(json ? terminalJson(overview) + '\n' : formatOverview(overview));
    } else {
      const listing = await readContainer(bucket, where, container, generation === undefined ? (flags.has('all') ? 'all' : 'newest') : (generation as Generation));
      process.stdout.write(json ? terminalJson(listing) + '\n' : formatContainerListing(listing));
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

async function readTails(bucket: Bucket, container?: string): Promise<{ tails: TailView[]; leftOut: LeftOut | null }> {
  const tails: TailView[] = [];
  let leftOut: LeftOut | null = null;
  const items = await bucket.listDivergent(undefined, { max: MAX_TAILS_SHOWN, onTruncated: (count, atLeast) => (leftOut = { count, atLeast }) });
  for (const item of items) {
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
  return { tails, leftOut };
}

async function readOverview(bucket: Bucket, where: string): Promise<Overview> {
  const generations: GenerationView[] = [];
  // Newest first, as an operator reads them.
  for (const g of (await bucket.listGenerations()).reverse()) generations.push(await readGeneration(bucket, g));
  const newest = generations.find((v) => v.problems.length === 0 && (v.head !== null || v.claimedAt !== null)) ?? null;
  let specsLeftOut: LeftOut | null = null;
  const specs = await bucket.listSpecNames({ max: MAX_SPECS_SHOWN, onTruncated: (count, atLeast) => (specsLeftOut = { count, atLeast }) });
  const { tails, leftOut } = await readTails(bucket);
  return { bucket: where, generations, newest: newest?.generation ?? null, containers: newest?.head?.containers ?? {}, specs, specsLeftOut, tails, tailsLeftOut: leftOut };
}

function commitView(r: CommitRecord): CommitView {
  return {
    seq: r.seq, parentSeq: r.parentSeq, kind: r.kind, publishedAt: r.publishedAt, firstWriteAt: r.firstWriteAt, size: r.size, files: r.counts.files,
    deletions: r.counts.deletions, bytes: r.counts.bytes, chunkedFiles: r.chunks?.files ?? 0, writer: r.writer, digest: r.digest,
  };
}

/**
 * The container's commits of generation g without reading the other containers' records: its chain down from the
 * seq the head names (commitChain), and the records published past the head (a LIST that finds nothing while the
 * head is current). Without a head the group signed, the generation's records are read in order, bounded.
 */
async function readCommits(bucket: Bucket, g: Generation, view: GenerationView, container: string): Promise<{ commits: CommitView[]; unreadable: string[]; truncated: boolean }> {
  const commits: CommitView[] = [];
  const unreadable: string[] = [];
  let truncated = false;
  const take = (item: JournalItem): void => {
    // Which container an unreadable record was for is unknown: show them all, so none is missed.
    if ('error' in item) unreadable.push(`seq ${item.seq}: ${item.error}`);
    else if (item.record.container === container) commits.push(commitView(item.record));
  };
  const headSeq = view.head?.seq ?? 0;
  const from = view.head?.containers[container];
  if (from !== undefined) {
    for await (const item of commitChain(bucket, g, from as Seq, container, { max: MAX_COMMITS_SHOWN, onTruncated: () => (truncated = true) })) {
      if ('error' in item) unreadable.push(`seq ${item.seq}: ${item.error}; reached from seq ${from} by parentSeq links, older commits of this generation not listed`);
      else commits.push(commitView(item.record));
    }
  }
  const past = view.head === null ? MAX_COMMITS_SHOWN : MAX_PAST_HEAD;
  for await (const item of bucket.listRecords(g, headSeq, { maxKeys: past, onTruncated: () => (truncated = true) })) take(item);
  commits.sort((a, b) => a.seq - b.seq);
  return { commits, unreadable, truncated };
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
    const view = await readGeneration(bucket, g);
    generations.push({ ...view, ...(await readCommits(bucket, g, view, container)) });
  }
  const { tails, leftOut } = await readTails(bucket, container);
  return { bucket: where, container, generations, tails, tailsLeftOut: leftOut };
}
