// The S3 side of the bench: the embedded S3 server as its own process (so its CPU does not share the bench's
// event loop), a tight head.json watcher, the PutObject floor, and request-counting proxies for the idle rate.
import { createReadStream, createWriteStream } from 'node:fs';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { pipeline } from 'node:stream/promises';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { S3RVER_CREDENTIALS } from '../../src/s3server/index.js';
import { spawnTwinlayer, type TwinlayerProcess } from '../../test/support/twinlayer.js';
import { waitFor } from '../../src/lab/wait.js';

export const BUCKET = 'twinlayer-bench';
export const PREFIX = 'twinlayer';
export const S3_ENV = { AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey, AWS_REGION: 'us-east-1' };

export interface S3Process {
  endpoint: string;
  port: number;
  proc: TwinlayerProcess;
  /** Open file descriptors of the server process (see restart). */
  openFds(): Promise<number>;
  /** Stops the server and starts it again on the same port and data dir (the bucket's content is kept). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

async function spawnS3(dir: string, listen: string): Promise<{ proc: TwinlayerProcess; port: number }> {
  const portFile = join(dir, 'port');
  await rm(portFile, { force: true });
  const proc = spawnTwinlayer(['s3', '--listen', listen, '--dir', join(dir, 'data'), '--bucket', BUCKET, '--port-file', portFile], { ...S3_ENV, TWINLAYER_LOG_LEVEL: 'warn' });
  try {
    const port = await waitFor('the S3 server port file', 30_000, async () => {
      if (proc.child.exitCode !== null) throw new Error(`twinlayer s3 exited: ${proc.lines.slice(-5).join('\n')}`);
      const text = await readFile(portFile, 'utf8').catch(() => '');
      return /^\d+$/.test(text.trim()) ? Number(text.trim()) : undefined;
    }, 50);
    return { proc, port };
  } catch (err) {
    await proc.kill('SIGKILL');
    throw err;
  }
}

/**
 * `twinlayer s3` on 127.0.0.1 (any port) over `dir`, with the bench bucket.
 * s3rver 3.7 leaks one file descriptor per GET answered 304 (it opens the object's read stream before checking
 * If-None-Match and never closes it); a puller polling head.json every 20 ms exhausts this machine's limit of
 * 20000 descriptors (not raisable here) in under 7 minutes. The bench restarts the server between workloads.
 */
export async function startS3Process(dir: string): Promise<S3Process> {
  let { proc, port } = await spawnS3(dir, '127.0.0.1:0');
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    get proc() {
      return proc;
    },
    async openFds() {
      return (await readdir(`/proc/${proc.child.pid}/fd`).catch(() => [])).length;
    },
    async restart() {
      await proc.kill('SIGTERM');
      ({ proc, port } = await spawnS3(dir, `127.0.0.1:${port}`));
    },
    stop: async () => void (await proc.kill('SIGTERM')),
  };
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });

/** A plain GET on the raw HTTP API (s3rver serves unsigned requests). Not conditional on purpose: s3rver leaks a
 *  file descriptor per 304 (see startS3Process), and head.json is a few hundred bytes. */
function plainGet(url: string): Promise<{ status: number; etag: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, etag: typeof res.headers.etag === 'string' ? res.headers.etag : undefined, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    // s3rver can leave a GET that races a PUT of the same key unanswered until its socket times out (~5 s);
    // the observer retries after 300 ms instead, as twinlayer's own client does after smallRequestTimeoutMs.
    req.setTimeout(300, () => req.destroy(new Error(`GET ${url} timed out`)));
  });
}

/** Polls one generation's head.json every `everyMs`; remembers when each container seq was first seen. */
export class HeadWatcher {
  readonly #url: string;
  readonly #everyMs: number;
  #running = false;
  #loop: Promise<void> | null = null;
  /** container -> (seq -> performance.now() when first seen). */
  readonly seen = new Map<string, Map<number, number>>();
  readonly latest = new Map<string, number>();
  polls = 0;

  readonly #journalUrl: string;

  constructor(endpoint: string, group: string, generation: number, everyMs: number) {
    this.#url = `${endpoint}/${BUCKET}/${PREFIX}/${group}/gen/${generation}/head.json`;
    this.#journalUrl = `${endpoint}/${BUCKET}/${PREFIX}/${group}/gen/${generation}/journal/`;
    this.#everyMs = everyMs;
  }

  start(): void {
    this.#running = true;
    this.#loop = this.#run();
  }

  async stop(): Promise<void> {
    this.#running = false;
    await this.#loop;
  }

  async #run(): Promise<void> {
    while (this.#running) {
      await this.pollOnce().catch(() => undefined);
      await new Promise((r) => setTimeout(r, this.#everyMs));
    }
  }

  async pollOnce(): Promise<void> {
    const res = await plainGet(this.#url);
    const now = performance.now();
    this.polls++;
    if (res.status !== 200) return;
    const head = JSON.parse(res.body) as { containers?: Record<string, number> };
    for (const [name, seq] of Object.entries(head.containers ?? {})) {
      let m = this.seen.get(name);
      if (!m) this.seen.set(name, (m = new Map<number, number>()));
      if (!m.has(seq)) m.set(seq, now);
      this.latest.set(name, seq);
    }
  }

  /** The changed bytes a commit record counts (files shipped whole and in chunks), or null when it cannot be read. */
  async recordBytes(seq: number): Promise<number | null> {
    const res = await plainGet(`${this.#journalUrl}${String(seq).padStart(16, '0')}.json`);
    if (res.status !== 200) return null;
    // A file shipped in chunks counts in chunks.bytes, not counts.bytes (its tar entry is empty): without it a bulk
    // change's delta (counts.bytes 0) was never taken for the commit that shipped the file, and the sample's bucket
    // time fell back to the burst's last commit, the full checkpoint that follows a bulk delta (about 1.5 s later).
    const record = JSON.parse(res.body) as { counts?: { bytes?: number }; chunks?: { bytes?: number } };
    if (record.counts?.bytes === undefined) return null;
    return record.counts.bytes + (record.chunks?.bytes ?? 0);
  }

  /** When a seq >= `seq` of `container` was first seen. */
  firstSeenAtLeast(container: string, seq: number): number | undefined {
    let best: number | undefined;
    for (const [s, at] of this.seen.get(container) ?? []) if (s >= seq && (best === undefined || at < best)) best = at;
    return best;
  }
}

/** The sync floors: one PutObject of the same bytes to the same server, with the SDK settings twinlayer uses, and one
 *  GetObject of them back into a file (what a standby cannot do with less). */
export class S3Floors {
  readonly #client: S3Client;
  #n = 0;

  constructor(endpoint: string) {
    this.#client = new S3Client({
      region: 'us-east-1',
      endpoint,
      forcePathStyle: true,
      maxAttempts: 1,
      credentials: { ...S3RVER_CREDENTIALS },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  /** Milliseconds for one PutObject of `file`. */
  async putFile(file: string): Promise<number> {
    return (await this.#put(file)).ms;
  }

  /** Milliseconds for one PutObject of `file`, then for one GetObject of that object streamed into `dest`. */
  async putThenGet(file: string, dest: string): Promise<{ putMs: number; getMs: number }> {
    const { key, ms: putMs } = await this.#put(file);
    const t0 = performance.now();
    const r = await this.#client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    if (!(r.Body instanceof Readable)) throw new Error(`floor GET ${key}: no stream body`);
    await pipeline(r.Body, createWriteStream(dest));
    const getMs = performance.now() - t0;
    await rm(dest, { force: true });
    return { putMs, getMs };
  }

  async #put(file: string): Promise<{ key: string; ms: number }> {
    const size = (await stat(file)).size;
    const key = `floor/${process.pid}-${this.#n++}`;
    const t0 = performance.now();
    await this.#client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: createReadStream(file), ContentLength: size }));
    return { key, ms: performance.now() - t0 };
  }

  destroy(): void {
    this.#client.destroy();
  }
}
