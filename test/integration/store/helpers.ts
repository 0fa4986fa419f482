// Shared by the store tests: records, collectors, a log collector, and BlobStore wrappers that let a test act
// between the Bucket and a real store (fix an object between attempts, see what a real S3 could list).
import type { Logger } from '../../../src/log/logger.js';
import { createLogger } from '../../../src/log/logger.js';
import {
  asDigest,
  type BlobStore,
  type BodyObserver,
  type GetOptions,
  type RangeOptions,
  type DeleteManyOptions,
  type CommitRecord,
  type Generation,
  type JournalItem,
  type Seq,
} from '../../../src/store/index.js';

export function record(g: number, seq: number, container = 'web', parentSeq = 0): CommitRecord {
  return {
    version: 1,
    seq: seq as Seq,
    parentSeq: parentSeq as Seq,
    generation: g as Generation,
    container,
    digest: asDigest('ab'.repeat(32)),
    size: 10,
    kind: 'delta',
    counts: { files: 1, deletions: 0, bytes: 10 },
    firstWriteAt: new Date(0).toISOString(),
    publishedAt: new Date(1000).toISOString(),
    writer: 'host-a',
  };
}

export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

export function describeItems(items: JournalItem[]): string[] {
  return items.map((i) => ('record' in i ? `${i.seq}` : `${i.seq}!`));
}

export async function eachLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: limit }, worker));
}

export function logCollector(): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger({ level: 'debug', write: (l) => lines.push(JSON.parse(l) as Record<string, unknown>) });
  return { log, lines };
}

/** Delegates to a real store; hooks run before each call; `keysRead` records every key the caller touched. */
export class WrappedStore implements BlobStore {
  readonly keysRead: string[] = [];
  beforePut: ((key: string, body: Buffer | { file: string }) => Promise<void> | void) | undefined;
  afterPut: ((key: string, body: Buffer | { file: string }) => Promise<void> | void) | undefined;
  beforeGetToFile: ((key: string, calls: number) => Promise<void>) | undefined;
  /** Before each ranged read (observeRange, so readRange too). */
  beforeRange: ((key: string, start: number) => Promise<void> | void) | undefined;
  getToFileCalls = 0;
  /** Keys a real S3 may hold but s3rver cannot (NUL, "..": it maps keys to paths); merged into listings. */
  injected: string[] = [];
  readonly puts: string[] = [];
  /** LIST calls (each may be several pages). */
  lists = 0;

  constructor(readonly inner: BlobStore) {}

  async put(key: string, body: Buffer | { file: string }): Promise<void> {
    await this.beforePut?.(key, body);
    await this.inner.put(key, body);
    this.puts.push(key);
    await this.afterPut?.(key, body);
  }
  async putIfAbsent(key: string, body: Buffer): Promise<boolean> {
    await this.beforePut?.(key, body);
    const created = await this.inner.putIfAbsent(key, body);
    if (created) this.puts.push(key);
    await this.afterPut?.(key, body);
    return created;
  }
  async putIfMatch(key: string, body: Buffer, etag: string): Promise<boolean> {
    await this.beforePut?.(key, body);
    const replaced = await this.inner.putIfMatch(key, body, etag);
    if (replaced) this.puts.push(key);
    await this.afterPut?.(key, body);
    return replaced;
  }
  getBuffer(key: string, maxBytes: number): Promise<Buffer | null> {
    this.keysRead.push(key);
    return this.inner.getBuffer(key, maxBytes);
  }
  async getToFile(key: string, file: string, maxBytes?: number, opts?: GetOptions): Promise<boolean> {
    this.keysRead.push(key);
    this.getToFileCalls++;
    await this.beforeGetToFile?.(key, this.getToFileCalls);
    return this.inner.getToFile(key, file, maxBytes, opts);
  }
  /** Ranged reads: each is recorded in keysRead (the key) and in ranges. */
  readonly ranges: Array<{ key: string; start: number; length: number }> = [];
  getRangeToFile(key: string, start: number, length: number, file: string) {
    this.keysRead.push(key);
    this.ranges.push({ key, start, length });
    return this.inner.getRangeToFile(key, start, length, file);
  }
  async observeRange(key: string, start: number, length: number, observe: BodyObserver, opts?: RangeOptions) {
    this.keysRead.push(key);
    this.ranges.push({ key, start, length });
    await this.beforeRange?.(key, start);
    return this.inner.observeRange(key, start, length, observe, opts);
  }
  getIfNoneMatch(key: string, etag: string | undefined, maxBytes: number) {
    this.keysRead.push(key);
    return this.inner.getIfNoneMatch(key, etag, maxBytes);
  }
  exists(key: string): Promise<boolean> {
    this.keysRead.push(key);
    return this.inner.exists(key);
  }
  async *list(prefix: string, startAfter?: string): AsyncIterable<string> {
    this.lists++;
    const all = [...(await collect(this.inner.list(prefix, startAfter)))];
    for (const k of this.injected) if (k.startsWith(prefix) && (startAfter === undefined || Buffer.compare(Buffer.from(k), Buffer.from(startAfter)) > 0)) all.push(k);
    all.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    yield* all;
  }
  delete(key: string): Promise<void> {
    return this.inner.delete(key);
  }
  listObjects(prefix: string, startAfter?: string) {
    return this.inner.listObjects(prefix, startAfter);
  }
  deleteMany(keys: readonly string[], opts?: DeleteManyOptions): Promise<void> {
    return this.inner.deleteMany(keys, opts);
  }
}
