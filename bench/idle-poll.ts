// `node --import tsx bench/idle-poll.ts [--rounds=3 --seconds=40 --ballast-mb=30 --tag=T] VARIANT...`: the whole
// process's CPU (process.cpuUsage: every thread, V8's GC and compiler threads included, user + system) of the
// standby's idle head poll: one lean 304 GET (S3BlobStore.getIfNoneMatch) every 250 ms, the rest of the time asleep,
// as the idle puller spends its minute. head-poll.ts measures a hot loop on one thread, which shows neither the GC
// threads' work nor what a request costs after a sleep (cold caches, a timer and an epoll wake-up each).
// A VARIANT is `name=DIST[:v8flag,v8flag...]`: the store of that build (DIST: a dist/ directory) in a child Node
// started as the daemons start (--max-semi-space-size=4, MALLOC_MMAP_THRESHOLD_), with those V8 flags added; e.g.
//   main=/work/main/dist this=dist this-stgc=dist:--single-threaded-gc
// The children poll at the same time, against the same embedded S3 server (in this process, so its CPU is not
// theirs), for `--seconds` a round after 40 warm-up polls; `--ballast-mb` of live objects in each child stands for a
// daemon's heap (the idle puller's V8 heap holds about 30 MB). Prints µs of CPU per poll (median over rounds) and the
// % of a core at 4 polls/s; writes bench/results/<date>-idle-poll[-T].json. Starts s3rver: run it under the heavy lock.
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { S3RVER_CREDENTIALS, startS3Server } from '../src/s3server/index.js';
import { S3BlobStore } from '../src/store/index.js';
import { summarize } from './lib/stats.js';

const BUCKET = 'idle-poll';
const KEY = 'twinlayer/g/gen/0000000001/head.json';
const POLL_MS = 250;

const option = (name: string, dflt: number): number => {
  const raw = process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const n = raw === undefined ? dflt : Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`--${name}: a non-negative integer, got ${raw}`);
  return n;
};
const rounds = option('rounds', 3);
const seconds = option('seconds', 40);
const ballastMb = option('ballast-mb', 30);
const tag = process.argv.find((a) => a.startsWith('--tag='))?.slice(6) ?? '';
const variants = process.argv.slice(2).filter((a) => !a.startsWith('--')).map((spec) => {
  const m = /^([\w.-]+)=([^:]+)(?::(.*))?$/.exec(spec);
  if (m === null) throw new Error(`a variant is name=DIST[:flag,flag], got ${spec}`);
  return { name: m[1]!, dist: resolve(m[2]!), flags: m[3] === undefined || m[3] === '' ? [] : m[3].split(',') };
});
if (variants.length === 0) throw new Error('name at least one variant: name=DIST[:v8flag,...]');

/** The child: polls its build's store and prints its CPU over the measured polls as one JSON line. */
const childSource = `
import { setTimeout as sleep } from 'node:timers/promises';
const [storeUrl, endpoint, bucket, key, polls, ballastMb, pollMs] = process.argv.slice(1);
const { S3BlobStore } = await import(storeUrl);
const ballast = [];
for (let i = 0; i < Number(ballastMb) * 1024 * 16; i++) ballast.push({ i, s: 'x'.repeat(24) + i, a: [i, i + 1] });
const store = new S3BlobStore({ bucket, region: 'us-east-1', endpoint, pathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
const first = await store.getIfNoneMatch(key, undefined, 4096);
const poll = async () => {
  await sleep(Number(pollMs));
  const r = await store.getIfNoneMatch(key, first.etag, 4096);
  if (r.status !== 'unchanged') throw new Error('expected 304, got ' + r.status);
};
for (let i = 0; i < 40; i++) await poll();
const t0 = process.cpuUsage(), th0 = process.threadCpuUsage();
for (let i = 0; i < Number(polls); i++) await poll();
const t = process.cpuUsage(t0), th = process.threadCpuUsage(th0);
process.stdout.write(JSON.stringify({ total: t.user + t.system, thread: th.user + th.system, ballast: ballast.length }) + '\\n');
store.destroy();
`;

function runChild(v: (typeof variants)[number], endpoint: string, polls: number): Promise<{ total: number; thread: number }> {
  const storeUrl = pathToFileURL(join(v.dist, 'store', 'index.js')).href;
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, ['--max-semi-space-size=4', ...v.flags, '--input-type=module', '-e', childSource, storeUrl, endpoint, BUCKET, KEY, String(polls), String(ballastMb), String(POLL_MS)], {
      env: { ...process.env, MALLOC_MMAP_THRESHOLD_: '131072', NODE_OPTIONS: '' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) reject(new Error(`variant ${v.name}: child exited ${code}`));
      else resolveRun(JSON.parse(out) as { total: number; thread: number });
    });
  });
}

const dir = await mkdtemp(join(tmpdir(), 'twinlayer-idle-poll-'));
const server = await startS3Server({ dir, buckets: [BUCKET] });
try {
  const store = new S3BlobStore({ bucket: BUCKET, region: 'us-east-1', endpoint: server.endpoint, pathStyle: true, credentials: { ...S3RVER_CREDENTIALS } });
  await store.put(KEY, Buffer.from(JSON.stringify({ seq: 1, pad: 'x'.repeat(280) })));
  store.destroy();
  const polls = Math.round((seconds * 1000) / POLL_MS);
  const per = new Map(variants.map((v) => [v.name, { total: [] as number[], thread: [] as number[] }]));
  for (let r = 0; r < rounds; r++) {
    const got = await Promise.all(variants.map((v) => runChild(v, server.endpoint, polls)));
    got.forEach((g, i) => {
      const p = per.get(variants[i]!.name)!;
      p.total.push(g.total / polls);
      p.thread.push(g.thread / polls);
    });
    console.error(`round ${r + 1}/${rounds}: ${got.map((g, i) => `${variants[i]!.name} ${Math.round(g.total / polls)} µs`).join(', ')}`);
  }
  const results = variants.map((v) => {
    const p = per.get(v.name)!;
    const total = summarize(p.total);
    return { variant: v.name, dist: v.dist, flags: v.flags, totalUsPerPoll: total, mainThreadUsPerPoll: summarize(p.thread), percentOfCore: Math.round((total.median * 4) / 1e4 * 100) / 100 };
  });
  console.log(`\nWhole-process CPU per idle head poll (304, one every ${POLL_MS} ms; median of ${rounds} rounds of ${polls} polls; µs; ballast ${ballastMb} MB)\n`);
  console.log('| variant | V8 flags | process µs / poll median (min–max) | main thread µs / poll | % of a core at 4 polls/s |');
  console.log('|---|---|---|---|---|');
  for (const r of results) {
    console.log(`| ${r.variant} | ${r.flags.join(' ') || '—'} | ${r.totalUsPerPoll.median} (${r.totalUsPerPoll.min}–${r.totalUsPerPoll.max}) | ${r.mainThreadUsPerPoll.median} | ${r.percentOfCore} |`);
  }
  const out = join(dirname(fileURLToPath(import.meta.url)), 'results', `${new Date().toISOString().slice(0, 10)}-idle-poll${tag ? `-${tag}` : ''}.json`);
  await writeFile(out, `${JSON.stringify({ date: new Date().toISOString(), node: process.version, rounds, seconds, ballastMb, pollMs: POLL_MS, results }, null, 2)}\n`);
  console.log(`\nwrote ${out}`);
} finally {
  await server.close();
  await rm(dir, { recursive: true, force: true });
}
