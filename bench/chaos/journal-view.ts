// The bucket's journal as the chaos soak sees it: every commit record read once (per generation, on from the last
// seq read), when each reached the bucket (the server's answer to its PUT, seen by the fault proxy on the writer's
// path: stored by then, so a finalize that starts later must find it), and the markers each changeset holds.
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { ProxyAnswer } from '../../src/lab/fault-proxy.js';
import { asDigest, type Bucket, type Generation } from '../../src/store/index.js';
import { markersInChangeset, type MarkerScan } from './markers.js';

export interface CommitInfo {
  seq: number;
  parentSeq: number;
  container: string;
  kind: 'delta' | 'full';
  digest: string;
  size: number;
}

const JOURNAL_PUT = /\/gen\/(\d+)\/journal\/(\d+)\.json(?:\?|$)/;

export class JournalView {
  readonly #bucket: Bucket;
  readonly #workDir: string;
  readonly #records = new Map<number, Map<number, CommitInfo>>();
  readonly #lastSeq = new Map<number, number>();
  readonly #ackAt = new Map<string, number>();
  readonly #markers = new Map<string, Promise<MarkerScan>>();
  /** Journal items that did not read (a gap, a record that does not parse): each is a failure of the soak. */
  readonly problems: string[] = [];

  constructor(bucket: Bucket, workDir: string) {
    this.#bucket = bucket;
    this.#workDir = workDir;
  }

  /** From the fault proxies: a journal PUT answered 2xx had reached the bucket at `at`. */
  noteAnswer(a: ProxyAnswer): void {
    if (a.method !== 'PUT' || a.status < 200 || a.status >= 300) return;
    const m = JOURNAL_PUT.exec(a.path);
    if (m === null) return;
    const key = `${Number(m[1])}/${Number(m[2])}`;
    if (!this.#ackAt.has(key)) this.#ackAt.set(key, a.at);
  }

  /** Reads the records of generation g published since the last call; returns all of g's. */
  async refresh(g: number): Promise<ReadonlyMap<number, CommitInfo>> {
    let recs = this.#records.get(g);
    if (recs === undefined) this.#records.set(g, (recs = new Map<number, CommitInfo>()));
    let last = this.#lastSeq.get(g) ?? 0;
    for await (const item of this.#bucket.listRecords(g as Generation, last)) {
      last = Math.max(last, item.seq);
      if ('error' in item) {
        this.problems.push(`journal of generation ${g}, seq ${item.seq}: ${item.error}`);
        continue;
      }
      const r = item.record;
      recs.set(item.seq, { seq: r.seq, parentSeq: r.parentSeq, container: r.container, kind: r.kind, digest: r.digest, size: r.size });
    }
    this.#lastSeq.set(g, last);
    return recs;
  }

  /** Every generation's records (refreshed). */
  async refreshAll(): Promise<number> {
    let n = 0;
    for (const g of await this.#bucket.listGenerations()) n += (await this.refresh(g)).size;
    return n;
  }

  /** When the record g/seq reached the bucket (epoch ms); undefined when no proxy saw its PUT answered. */
  ackAt(g: number, seq: number): number | undefined {
    return this.#ackAt.get(`${g}/${seq}`);
  }

  /**
   * Records read so far that reached the bucket before `t`: every record of a generation below `g`, and those of
   * `g` whose PUT was answered before `t` (one no proxy saw answered counts too: stricter, and listed).
   */
  before(g: number, t: number): { count: number; inGeneration: number; newest: Map<string, number>; unseen: number[] } {
    let count = 0;
    let inGeneration = 0;
    const newest = new Map<string, number>();
    const unseen: number[] = [];
    for (const [gen, recs] of this.#records) {
      if (gen > g) continue;
      for (const r of recs.values()) {
        if (gen === g) {
          const at = this.ackAt(gen, r.seq);
          if (at === undefined) unseen.push(r.seq);
          else if (at >= t) continue;
          if (r.seq > (newest.get(r.container) ?? 0)) newest.set(r.container, r.seq);
          inGeneration++;
        }
        count++;
      }
    }
    return { count, inGeneration, newest, unseen };
  }

  record(g: number, seq: number): CommitInfo | undefined {
    return this.#records.get(g)?.get(seq);
  }

  /** The markers a commit's changeset holds (downloaded once per digest). */
  markersOf(c: CommitInfo): Promise<MarkerScan> {
    let p = this.#markers.get(c.digest);
    if (p === undefined) {
      p = this.#readMarkers(c.digest, c.size);
      this.#markers.set(c.digest, p);
      p.catch(() => this.#markers.delete(c.digest));
    }
    return p;
  }

  /** A divergent tail's changeset, or any blob: its markers. */
  markersOfBlob(digest: string, size: number): Promise<MarkerScan> {
    return this.markersOf({ seq: 0, parentSeq: 0, container: '', kind: 'delta', digest, size });
  }

  async #readMarkers(digest: string, size: number): Promise<MarkerScan> {
    await mkdir(this.#workDir, { recursive: true });
    const file = join(this.#workDir, `${digest}.tar.gz`);
    try {
      await this.#bucket.downloadBlob(asDigest(digest), size, file);
      return await markersInChangeset(file);
    } finally {
      await rm(file, { force: true });
    }
  }

  /**
   * The highest marker in what a twin staged to `seq` of generation g holds: markers only grow, so it is the
   * highest of the newest commit of the chain (parentSeq) back from `seq` that holds any. 0 when none does.
   */
  async maxMarker(g: number, seq: number): Promise<number> {
    for (let s = seq, i = 0; s > 0; i++) {
      const c = this.record(g, s);
      if (c === undefined) throw new Error(`journal view: no record ${g}/${s} read (refresh first)`);
      const { markers } = await this.markersOf(c);
      if (markers.size > 0) return Math.max(...markers);
      if (i > 100_000) throw new Error(`journal view: the parentSeq chain from ${g}/${seq} does not end`);
      s = c.parentSeq;
    }
    return 0;
  }

  /** Commits of `container` in generation g with fromSeq < seq <= toSeq. */
  range(g: number, container: string, fromSeq: number, toSeq: number): CommitInfo[] {
    return [...(this.#records.get(g)?.values() ?? [])].filter((r) => r.container === container && r.seq > fromSeq && r.seq <= toSeq);
  }

  async close(): Promise<void> {
    await rm(this.#workDir, { recursive: true, force: true });
  }
}
