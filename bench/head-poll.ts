// `node --import tsx bench/head-poll.ts [--rounds=7 --requests=400 --tag=T]`: CPU of one small GET on the client's
// thread, the request the standby sends every 250 ms (its head poll): the AWS SDK's GetObject, as the store sent it
// before, against the store's lean signed GET (src/store/s3-small-get.ts), each answered 304 (If-None-Match, the idle
// case) and 200 (a head that moved, 300 bytes). The embedded S3 server runs in a worker thread, so its work is not on
// the measured thread (process.threadCpuUsage). Requests go one at a time, as the poll sends them; each round's CPU is
// divided by its requests, the median over rounds printed. Writes bench/results/<date>-head-poll[-T].json. Starts
// s3rver: run it under the heavy lock.
import { writeFile } from 'node:fs/promises';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';

import { S3RVER_CREDENTIALS, startS3Server } from '../src/s3server/index.js';
import { S3BlobStore } from '../src/store/index.js';
import { summarize } from './lib/stats.js';

const BUCKET = 'head-poll';
const KEY = 'twinlayer/g/gen/0000000001/head.json';

if (!isMainThread) {
  const server = await startS3Server({ dir: (workerData as { dir: string }).dir, buckets: [BUCKET] });
  parentPort?.postMessage(server.endpoint);
  parentPort?.once('message', () => void server.close().then(() => process.exit(0)));
} else {
  await main();
}

async function main(): Promise<void> {
  const arg = (name: string, dflt: number): number => {
    const raw = process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
    const n = raw === undefined ? dflt : Number(raw);
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`--${name}: a positive integer, got ${raw}`);
    return n;
  };
  const rounds = arg('rounds', 7);
  const requests = arg('requests', 400);
  const tag = process.argv.find((a) => a.startsWith('--tag='))?.slice(6) ?? '';
  const dir = await mkdtemp(join(tmpdir(), 'twinlayer-head-poll-'));
  const worker = new Worker(fileURLToPath(import.meta.url), { workerData: { dir } });
  const stopWorker = async (): Promise<void> => {
    worker.postMessage('stop');
    await new Promise((resolve) => worker.once('exit', resolve));
  };
  try {
    const endpoint = await new Promise<string>((resolve, reject) => {
      worker.once('message', (m: string) => resolve(m));
      worker.once('error', reject);
    });
    const store = new S3BlobStore({ bucket: BUCKET, region: 'us-east-1', endpoint, pathStyle: true, credentials: { ...S3RVER_CREDENTIALS } });
    // The SDK client configured as the store configures its own (s3-blob-store.ts).
    const sdk = new S3Client({
      region: 'us-east-1', endpoint, forcePathStyle: true, maxAttempts: 1, credentials: { ...S3RVER_CREDENTIALS },
      requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED',
    });
    try {
      await store.put(KEY, Buffer.from(JSON.stringify({ seq: 1, pad: 'x'.repeat(280) })));
      const first = await store.getIfNoneMatch(KEY, undefined, 4096);
      if (first.status !== 'ok') throw new Error(`head not readable: ${first.status}`);
      const etag = first.etag;
      const sdkGet = async (tagged: boolean): Promise<void> => {
        try {
          const out = await sdk.send(new GetObjectCommand({ Bucket: BUCKET, Key: KEY, ...(tagged ? { IfNoneMatch: etag } : {}) }), { abortSignal: AbortSignal.timeout(2000) });
          await out.Body?.transformToByteArray();
        } catch (err) {
          if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode !== 304) throw err;
        }
      };
      const variants: { name: string; answer: string; once: () => Promise<unknown> }[] = [
        { name: 'AWS SDK GetObject (before)', answer: '304', once: () => sdkGet(true) },
        { name: 'lean signed GET (after)', answer: '304', once: () => store.getIfNoneMatch(KEY, etag, 4096) },
        { name: 'AWS SDK GetObject (before)', answer: '200', once: () => sdkGet(false) },
        { name: 'lean signed GET (after)', answer: '200', once: () => store.getIfNoneMatch(KEY, undefined, 4096) },
      ];
      const results = [];
      for (const v of variants) {
        for (let i = 0; i < 200; i++) await v.once(); // warm-up: JIT, sockets
        const perRequestUs: number[] = [];
        for (let r = 0; r < rounds; r++) {
          const t0 = process.threadCpuUsage();
          for (let i = 0; i < requests; i++) await v.once();
          const t = process.threadCpuUsage(t0);
          perRequestUs.push((t.user + t.system) / requests);
        }
        const s = summarize(perRequestUs);
        // At the default 250 ms poll: four a second.
        results.push({ variant: v.name, answer: v.answer, cpuUsPerRequest: s, percentOfCoreAt4PerSecond: Math.round((s.median * 4) / 1e4 * 100) / 100 });
      }
      console.log(`CPU per small GET on the client's thread (median of ${rounds} rounds of ${requests}; µs; s3rver in a worker thread)\n`);
      console.log('| variant | answer | µs / request median (min–max) | % of a core at 4 polls/s |');
      console.log('|---|---|---|---|');
      for (const r of results) console.log(`| ${r.variant} | ${r.answer} | ${r.cpuUsPerRequest.median} (${r.cpuUsPerRequest.min}–${r.cpuUsPerRequest.max}) | ${r.percentOfCoreAt4PerSecond} |`);
      const out = join(dirname(fileURLToPath(import.meta.url)), 'results', `${new Date().toISOString().slice(0, 10)}-head-poll${tag ? `-${tag}` : ''}.json`);
      await writeFile(out, `${JSON.stringify({ date: new Date().toISOString(), node: process.version, rounds, requests, results }, null, 2)}\n`);
      console.log(`\nwrote ${out}`);
    } finally {
      store.destroy();
      sdk.destroy();
    }
  } finally {
    await stopWorker();
    await rm(dir, { recursive: true, force: true });
  }
}
