// Shared by the puller tests: the test plays the primary (real changesets from UpperTracker published with a
// JournalWriter, or crafted records and tars for hostile cases), and reads back what the puller did.
import { createHash } from 'node:crypto';
import { lstat, mkdir, readFile, readdir, readlink, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';

import { UpperTracker, type TrackedVolume } from '../../../src/changeset/index.js';
import { blockSize, decodeHeaderBlock, paddingFor, parsePaxBody } from '../../../src/changeset/tar-format.js';
import { specDigest, twinSpecSchema, type TwinSpec } from '../../../src/docker/index.js';
import { createLogger, type Logger } from '../../../src/log/logger.js';
import {
  asDigest, Bucket, JournalWriter, type BlobStore, type CommitCounts, type CommitRecord, type Digest, type Generation, type Seq,
} from '../../../src/store/index.js';
import { PULLER_IMAGE } from '../../support/puller.js';
import { file as tarFile, tarOf } from '../changeset/craft-tar.js';
import { testSignatures } from '../../support/signing.js';

export { openPuller } from '../../support/puller.js';

export const WRITER = 'test-primary';

/** A twin spec as the primary would publish it, for a busybox image present on the standby. */
export function twinSpec(name: string, imageId: string): TwinSpec {
  return twinSpecSchema.parse({
    version: 1, name, image: PULLER_IMAGE, imageId, cmd: ['sh'], entrypoint: null, env: [], labels: {},
    workingDir: '', user: '', exposedPorts: [], portBindings: {}, networkMode: 'none', capturedAt: new Date().toISOString(),
  });
}

/** Collects log lines so a test can show them on failure and look for an alert. */
export function collectingLogger(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: createLogger({ level: 'debug', write: (l) => lines.push(l) }), lines };
}

/** One primary container: an upper dir the test writes into, and the tracker that turns it into changesets. */
export class PrimaryContainer {
  readonly name: string;
  readonly upper: string;
  readonly #tracker: UpperTracker;
  readonly #primary: Primary;
  #first = true;
  /** The spec the records name (CommitRecord.specDigest), as a pusher does; undefined: records name none. */
  #specDigest: Digest | undefined;

  constructor(primary: Primary, name: string, upper: string, work: string, spec?: TwinSpec, volumes?: readonly TrackedVolume[]) {
    this.name = name;
    this.upper = upper;
    this.#primary = primary;
    this.#tracker = new UpperTracker({ upperDir: upper, workDir: work, ...(volumes === undefined ? {} : { volumes }) });
    this.#specDigest = spec === undefined ? undefined : asDigest(specDigest(spec));
  }

  /** Puts another spec of this container, as a pusher does when the container was recreated: the records after it
   *  name it. */
  async putSpec(spec: TwinSpec): Promise<void> {
    await this.#primary.bucket.putSpec(this.name, spec);
    this.#specDigest = asDigest(specDigest(spec));
  }

  /** Applies `change` to the upper dir, builds the changeset (full the first time or when asked), uploads, publishes. */
  async commit(change: (upper: string) => Promise<void>, kind?: 'full'): Promise<CommitRecord> {
    await change(this.upper);
    const full = kind === 'full' || this.#first;
    const built = await this.#tracker.build(full ? 'full' : 'reconcile');
    if (built === null) throw new Error(`commit of ${this.name}: nothing changed`);
    try {
      await this.#primary.bucket.uploadBlob(built.file, asDigest(built.digest));
      const rec = await this.#primary.journal.publish({
        container: this.name, digest: asDigest(built.digest), size: built.size, kind: built.kind, counts: built.counts, firstWriteAt: new Date(),
        ...(this.#specDigest === undefined ? {} : { specDigest: this.#specDigest }),
      });
      this.#tracker.commit(built);
      this.#first = false;
      return rec;
    } finally {
      await rm(built.file, { force: true });
    }
  }
}

/** The test's primary: a journal writer of one generation and containers under `root`. */
export class Primary {
  readonly bucket: Bucket;
  readonly journal: JournalWriter;
  readonly #root: string;

  constructor(bucket: Bucket, root: string, generation = 1) {
    this.bucket = bucket;
    this.#root = root;
    this.journal = new JournalWriter(bucket, { generation: generation as Generation, writer: WRITER, head: null });
  }

  /** A container whose spec is put now; `opts.spec` (default twinSpec) is also named by its records when given.
   *  `opts.volumes`: volume dirs shipped with the upper dir (each under its key). */
  async container(name: string, imageId: string, opts: { spec?: TwinSpec; volumes?: readonly TrackedVolume[] } = {}): Promise<PrimaryContainer> {
    const upper = join(this.#root, name, 'upper');
    const work = join(this.#root, name, 'work');
    await mkdir(upper, { recursive: true });
    await mkdir(work, { recursive: true });
    await this.bucket.putSpec(name, opts.spec ?? twinSpec(name, imageId));
    return new PrimaryContainer(this, name, upper, work, opts.spec, opts.volumes);
  }
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Puts gzip bytes under their content address; returns the digest, size and counts a record names. */
export async function putBlob(store: BlobStore, bucket: Bucket, gz: Buffer): Promise<{ digest: Digest; size: number; counts: CommitCounts }> {
  const digest = asDigest(sha256(gz));
  await store.put(bucket.blobKey(digest), gz);
  return { digest, size: gz.length, counts: countsOf(gz) };
}

/** countsOf reads crafted changesets up to this size; anything larger is a bomb and counts as empty. */
const COUNTS_MAX_TAR_BYTES = 256 * 1024 * 1024;

/** The counts a pusher would record for a crafted changeset (files, deletions, file bytes); stops counting at
 *  anything it cannot read (hostile blobs are refused for that anyway). */
export function countsOf(gz: Buffer): CommitCounts {
  const counts: CommitCounts = { files: 0, deletions: 0, bytes: 0 };
  let tar: Buffer;
  try {
    // Bounded: the hostile blobs are gzip bombs (64 GiB of zeros). Node 20 refused any Buffer over 4 GiB, so an
    // unbounded gunzipSync failed fast there; from Node 22 Buffers may be far larger and it inflated until the
    // machine ran out of memory.
    tar = gunzipSync(gz, { maxOutputLength: COUNTS_MAX_TAR_BYTES });
  } catch {
    return counts;
  }
  let pax: Map<string, Buffer> | null = null;
  for (let off = 0; off + blockSize <= tar.length;) {
    const h = decodeHeaderBlock(tar.subarray(off, off + blockSize));
    if (h === null || typeof h === 'string') break;
    const size = Number(pax?.get('size')?.toString() ?? h.size ?? 0);
    off += blockSize;
    if (h.typeKey === 'x') {
      const body = parsePaxBody(tar.subarray(off, off + size));
      pax = typeof body === 'string' ? null : body;
      off += size + paddingFor(size);
      continue;
    }
    const path = pax?.get('path')?.toString() ?? h.path;
    pax = null;
    const base = path.replace(/\/$/, '').split('/').pop() ?? '';
    if (base === '.wh..wh..opq') {
      // not counted
    } else if (base.startsWith('.wh.')) counts.deletions++;
    else {
      counts.files++;
      if (h.typeKey === '0') counts.bytes += size;
    }
    off += size + paddingFor(size);
  }
  return counts;
}

export function gz(tar: Buffer): Buffer {
  return gzipSync(tar, { level: 1 });
}

/** A commit record as a pusher writes it. */
export function craftRecord(r: {
  generation?: number; seq: number; parentSeq: number; container: string; digest: Digest; size: number; kind?: 'delta' | 'full'; counts?: CommitCounts;
  /** A full checkpoint restating its parent (CommitRecord.sameAs). */
  sameAs?: number;
}): CommitRecord {
  return {
    version: 1,
    seq: r.seq as Seq,
    parentSeq: r.parentSeq as Seq,
    generation: (r.generation ?? 1) as Generation,
    container: r.container,
    digest: r.digest,
    size: r.size,
    kind: r.kind ?? 'delta',
    counts: r.counts ?? { files: 1, deletions: 0, bytes: 1 },
    firstWriteAt: new Date().toISOString(),
    publishedAt: new Date().toISOString(),
    writer: WRITER,
    ...(r.sameAs === undefined ? {} : { sameAs: r.sameAs as Seq }),
  };
}

/** One container's journal as its primary writes it, in crafted commits of text files; the head names its newest full
 *  checkpoint. `files` is what the container holds, `blobs` the digest of each commit by seq. */
export function craftedJournal(store: BlobStore, group: string, name: string): {
  writer: Bucket;
  files: Map<string, string>;
  blobs: Map<number, Digest>;
  /** Writes `changes` into the container and publishes them; returns the commit's seq. A full commit carries every file
   *  the container holds: it replaces them with `changes`, or (`sameAs`, CommitRecord.sameAs) restates its parent. */
  publish: (changes: Record<string, string>, kind?: 'delta' | 'full', sameAs?: boolean) => Promise<number>;
} {
  const writer = bucketFor(store, group);
  const files = new Map<string, string>();
  const blobs = new Map<number, Digest>();
  let seq = 0;
  let lastFull = 0;
  const publish = async (changes: Record<string, string>, kind: 'delta' | 'full' = 'delta', sameAs = false): Promise<number> => {
    if (kind === 'full' && !sameAs) files.clear();
    for (const [p, body] of Object.entries(changes)) files.set(p, body);
    const shipped = kind === 'full' ? [...files] : Object.entries(changes);
    const blob = await putBlob(store, writer, gz(tarOf(shipped.map(([p, body]) => tarFile(p, body)))));
    const parentSeq = seq;
    seq++;
    await writer.writeRecord(craftRecord({ seq, parentSeq, container: name, kind, ...blob, ...(sameAs ? { sameAs: parentSeq } : {}) }));
    if (kind === 'full') lastFull = seq;
    blobs.set(seq, blob.digest);
    await writer.writeHead({
      version: 1, generation: 1 as Generation, seq: seq as Seq, writer: WRITER, updatedAt: new Date().toISOString(),
      containers: { [name]: seq as Seq }, lastFull: { [name]: lastFull as Seq },
    });
    return seq;
  };
  return { writer, files, blobs, publish };
}

export async function writeHead(bucket: Bucket, seq: number, containers: Record<string, number>, generation = 1): Promise<void> {
  await bucket.writeHead({
    version: 1, generation: generation as Generation, seq: seq as Seq, writer: WRITER, updatedAt: new Date().toISOString(),
    containers: containers as Record<string, Seq>,
  });
}

export interface AppliedFile {
  generation: number;
  cursor: number;
  containers: Record<string, { generation: number; seq: number; twinId?: string }>;
}

export async function readApplied(stateDir: string, group: string): Promise<AppliedFile | null> {
  const text = await readFile(join(stateDir, 'pull', group, 'applied.json'), 'utf8').catch(() => null);
  return text === null ? null : (JSON.parse(text) as AppliedFile);
}

export async function appliedSeq(stateDir: string, group: string, name: string): Promise<number> {
  return (await readApplied(stateDir, group))?.containers[name]?.seq ?? 0;
}

/** The tree under `dir`: relative path -> kind and content hash (files), target (links), mode. Bounded by `max`. */
export async function treeOf(dir: string, max = 100_000): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(join(dir, rel))).sort()) {
      if (out.size >= max) throw new Error(`tree of ${dir} has more than ${max} entries`);
      const r = rel === '' ? name : `${rel}/${name}`;
      const st = await lstat(join(dir, r));
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isDirectory()) {
        out.set(r, `d ${mode}`);
        await walk(r);
      } else if (st.isSymbolicLink()) {
        out.set(r, `l ${await readlink(join(dir, r))}`);
      } else if (st.isFile()) {
        out.set(r, `f ${mode} ${sha256(await readFile(join(dir, r)))}`);
      } else {
        out.set(r, `o ${st.mode.toString(8)} ${st.rdev}`);
      }
    }
  };
  await walk('');
  return out;
}

export function diffTrees(a: Map<string, string>, b: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [k, v] of a) if (b.get(k) !== v) out.push(`${k}: ${v} vs ${b.get(k) ?? '(absent)'}`);
  for (const [k, v] of b) if (!a.has(k)) out.push(`${k}: (absent) vs ${v}`);
  return out;
}

export function bucketFor(store: BlobStore, group: string, log?: Logger): Bucket {
  return new Bucket(store, { signatures: testSignatures(), prefix: 'twinlayer', group, ...(log === undefined ? {} : { log }) });
}
