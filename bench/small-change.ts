// Where the time of a small change goes on the pusher's side: the real watcher, burst collector, replicator,
// tracker and journal, in process, against the bench's S3 server (its own process), on a plain directory standing
// for an upper dir. A shell writes the change as the sync workload does (`{ echo TOKEN; head -c N; } > file`); each
// step is stamped from the moment the shell returned. Not part of `npm run bench` (it needs no Docker):
//   node --import tsx bench/small-change.ts [--samples=N] [--bytes=N] [--quiet-ms=N]
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import PQueue from 'p-queue';
import { UpperTracker } from '../src/changeset/index.js';
import { silentLogger } from '../src/log/logger.js';
import { BurstCollector } from '../src/pusher/burst.js';
import { ContainerReplicator } from '../src/pusher/replicator.js';
import { ShippedStateStore } from '../src/pusher/shipped-state.js';
import { watchUpper } from '../src/pusher/upper-watcher.js';
import { S3RVER_CREDENTIALS } from '../src/s3server/index.js';
import { asDigest, asGeneration, Bucket, JournalWriter, S3BlobStore, type BlobStore, type BodyObserver, type GetOptions, type RangeObserved, type RangeOptions, type RangeRead } from '../src/store/index.js';
import { testSignatures } from '../test/support/signing.js';
import { BUCKET, startS3Process } from './lib/s3.js';
import { summarize } from './lib/stats.js';

const execFileP = promisify(execFile);

/** Stamps (ms after the write returned) of one sample's steps; a step seen twice keeps its first stamp. */
type Marks = Map<string, number>;

/** Times every request by the kind of object it is for. */
class TimedStore implements BlobStore {
  constructor(private readonly inner: BlobStore, private readonly mark: (what: string) => void) {}
  #kind(key: string): string {
    return key.includes('/blobs/') ? 'blob' : key.endsWith('head.json') ? 'head' : key.includes('/journal/') ? 'record' : 'other';
  }
  async #timed<T>(op: string, key: string, f: () => Promise<T>): Promise<T> {
    const what = `${op} ${this.#kind(key)}`;
    this.mark(`${what} start`);
    const v = await f();
    this.mark(`${what} done`);
    return v;
  }
  put(key: string, body: Buffer | { file: string }): Promise<void> { return this.#timed('PUT', key, () => this.inner.put(key, body)); }
  putIfAbsent(key: string, body: Buffer): Promise<boolean> { return this.#timed('PUT-if-absent', key, () => this.inner.putIfAbsent(key, body)); }
  putIfMatch(key: string, body: Buffer, etag: string): Promise<boolean> { return this.#timed('PUT-if-match', key, () => this.inner.putIfMatch(key, body, etag)); }
  getBuffer(key: string, maxBytes: number): Promise<Buffer | null> { return this.#timed('GET', key, () => this.inner.getBuffer(key, maxBytes)); }
  getToFile(key: string, file: string, maxBytes?: number, opts?: GetOptions): Promise<boolean> { return this.#timed('GET', key, () => this.inner.getToFile(key, file, maxBytes, opts)); }
  getRangeToFile(key: string, start: number, length: number, file: string): Promise<RangeRead> { return this.#timed('GET-range', key, () => this.inner.getRangeToFile(key, start, length, file)); }
  observeRange(key: string, start: number, length: number, observe: BodyObserver, opts?: RangeOptions): Promise<RangeObserved> { return this.#timed('GET-range', key, () => this.inner.observeRange(key, start, length, observe, opts)); }
  getIfNoneMatch(key: string, etag: string | undefined, maxBytes: number): ReturnType<BlobStore['getIfNoneMatch']> {
    return this.#timed('GET', key, () => this.inner.getIfNoneMatch(key, etag, maxBytes));
  }
  exists(key: string): Promise<boolean> { return this.#timed('HEAD', key, () => this.inner.exists(key)); }
  list(prefix: string, startAfter?: string): AsyncIterable<string> { return this.inner.list(prefix, startAfter); }
  delete(key: string): Promise<void> { return this.#timed('DELETE', key, () => this.inner.delete(key)); }
  listObjects(prefix: string, startAfter?: string) { return this.inner.listObjects(prefix, startAfter); }
  deleteMany(keys: readonly string[]): Promise<void> { return this.inner.deleteMany(keys); }
}

function arg(name: string, fallback: number): number {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a === undefined ? fallback : Number(a.slice(name.length + 3));
}

async function main(): Promise<void> {
  const samples = arg('samples', 15);
  const bytes = arg('bytes', 4096);
  const quietMs = arg('quiet-ms', 50);
  const base = await mkdtemp(join('/tmp', 'tlb-small-'));
  const s3 = await startS3Process(join(base, 's3'));
  const inner = new S3BlobStore({ bucket: BUCKET, region: 'us-east-1', endpoint: s3.endpoint, pathStyle: true, credentials: { ...S3RVER_CREDENTIALS } });
  let t0 = 0;
  let marks: Marks = new Map();
  const mark = (what: string): void => {
    if (t0 === 0) return;
    const at = performance.now() - t0;
    if (!marks.has(what)) marks.set(what, at);
    if (process.env['SMALL_TRACE'] === '1') process.stderr.write(`  ${at.toFixed(1)} ${what}\n`);
    if (what === 'build start') marks.set('builds', (marks.get('builds') ?? 0) + 1);
    if (what === 'PUT head done') {
      marks.set('PUT head done (last)', at);
      marks.set('commits', (marks.get('commits') ?? 0) + 1);
    }
  };
  const store = new TimedStore(inner, mark);
  const upper = join(base, 'upper');
  const name = 'small';
  try {
    await mkdir(join(upper, 'etc'), { recursive: true });
    const bucket = new Bucket(store, { signatures: testSignatures(), prefix: `small-${randomBytes(4).toString('hex')}`, group: 'small' });
    const generation = asGeneration(1);
    const journal = new JournalWriter(bucket, { generation, writer: 'bench', head: null });
    const publish = journal.publish.bind(journal);
    journal.publish = async (input) => {
      const rec = await publish(input);
      if (input.counts.bytes >= bytes) mark('whole file published');
      return rec;
    };
    const shippedState = new ShippedStateStore(join(base, 'state'), 'small');
    const save = shippedState.save.bind(shippedState);
    shippedState.save = async (n, pending, state, text) => {
      mark(`state ${pending ? 'pending' : 'committed'} save start`);
      await save(n, pending, state, text);
      mark(`state ${pending ? 'pending' : 'committed'} save done`);
    };
    const replicator = new ContainerReplicator({
      name, containerId: 'bench', generation, shipped: undefined, needFull: true, specDigest: asDigest('0'.repeat(64)),
      bucket, journal, uploads: new PQueue({ concurrency: 4 }), shippedState, log: silentLogger, retry: (paths) => collector.retry(paths),
      makeTracker: (s) => {
        const t = new UpperTracker({ upperDir: upper, workDir: join(base, 'work'), ...(s ? { shipped: s } : {}) });
        const build = t.build.bind(t);
        t.build = async (scope, opts) => {
          mark('build start');
          const built = await build(scope, opts);
          mark(built === null ? 'build (nothing)' : 'build done');
          return built;
        };
        return t;
      },
    });
    const collector: BurstCollector = new BurstCollector({ quietMs, maxMs: 10 * quietMs, onFlush: (b) => { mark('flush'); replicator.submit(b); } });
    const watch = await watchUpper({ upperDir: upper, onPath: (rel) => { mark('event'); collector.add(rel); }, onLost: () => collector.addReconcile(), log: silentLogger });
    collector.addReconcile();
    collector.flush();
    await replicator.idle();
    const rows: Marks[] = [];
    for (let i = 0; i < samples + 1; i++) {
      const token = `tok-${randomBytes(8).toString('hex')}`;
      marks = new Map();
      const published = new Promise<void>((resolve) => {
        const poll = (): void => {
          if (marks.has('whole file published') && !replicator.status(collector.firstChangeAt).pendingSince) resolve();
          else setTimeout(poll, 1);
        };
        poll();
      });
      t0 = performance.now();
      const shell = execFileP('sh', ['-c', `{ echo ${token}; head -c ${bytes - token.length - 1} /dev/urandom; } > ${join(upper, 'etc/app.conf')}`]);
      await shell;
      const wrote = performance.now() - t0;
      t0 += wrote;
      for (const [k, v] of marks) if (k !== 'commits' && k !== 'builds') marks.set(k, v - wrote);
      await published;
      await replicator.idle();
      await new Promise((r) => setTimeout(r, quietMs * 3));
      if (i > 0) rows.push(marks);
      t0 = 0;
    }
    await watch.close();
    collector.close();
    await replicator.close();
    await journal.close();
    const steps = [...new Set(rows.flatMap((r) => [...r.keys()]))];
    const table = steps
      .map((s) => ({ step: s, ...summarize(rows.map((r) => r.get(s)).filter((v): v is number => v !== undefined)) }))
      .sort((a, b) => a.median - b.median);
    process.stdout.write(`small change of ${bytes} bytes, quiet ${quietMs} ms, ${samples} samples: ms after the writing shell returned\n`);
    for (const row of table) process.stdout.write(`${row.step.padEnd(32)} median ${row.median.toFixed(1).padStart(7)}  (n ${row.n})\n`);
  } finally {
    inner.destroy();
    await s3.stop();
    await rm(base, { recursive: true, force: true });
  }
}

await main();
