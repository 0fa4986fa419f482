// `node --import tsx bench/idle-rss.ts [--runs=N] [--tag=T]` (root; starts engines: heavy lock): the RSS row of issue
// 13's targets alone, taken as `npm run bench` takes it — the recovery point of 40 containers of the 46 MB image
// (bench/recovery.ts): push + pull until all 40 are staged (the pusher ships the image meanwhile), then the idle
// windows of 30 s at the bench's 20 ms poll and at the default 250 ms, VmRSS of each process at each window's end.
// Without the other workloads of the run (about 1.5 min instead of 15); `TWINLAYER_BENCH_BIN=OTHER/bin/twinlayer.js`
// measures another tree's build. Writes results/<date>-idle-rss[-T].json.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeServiceImage, startCluster, stopCluster, type Cluster } from './lib/cluster.js';
import { runRecoveryPoint } from './recovery.js';

const tag = process.argv.find((a) => a.startsWith('--tag='))?.slice('--tag='.length).replace(/[^\w-]/g, '') ?? '';
const runs = Number(process.argv.find((a) => a.startsWith('--runs='))?.slice('--runs='.length) ?? '1');
if (!Number.isInteger(runs) || runs < 1 || runs > 5) throw new RangeError(`--runs: 1..5, got ${runs}`);
const resultsDir = join(dirname(fileURLToPath(import.meta.url)), 'results');
const log = (line: string): void => { process.stdout.write(`${new Date().toISOString()} ${line}\n`); };

const base = await mkdtemp(join(tmpdir(), 'tl-idle-rss-'));
let cluster: Cluster | null = null;
// Ctrl-C or a kill: the engines, the S3 server and the processes go too.
const onSignal = (): void => {
  log('interrupted: cleaning up');
  void (cluster ? stopCluster(cluster) : Promise.resolve()).finally(() => rm(base, { recursive: true, force: true })).finally(() => process.exit(130));
};
process.once('SIGINT', onSignal);
process.once('SIGTERM', onSignal);
try {
  cluster = await startCluster(base, () => undefined);
  await makeServiceImage(cluster, 46);
  const point = await runRecoveryPoint(cluster, 46, 40, { runs, pollIntervalMs: 20, idleWindowMs: 30_000, log });
  for (const w of point.idle ?? []) log(`idle, poll ${w.pollIntervalMs} ms: RSS pusher ${w.pusherRssMB} MB, puller ${w.pullerRssMB} MB`);
  const out = join(resultsDir, `${new Date().toISOString().slice(0, 10)}-idle-rss${tag ? `-${tag}` : ''}.json`);
  await writeFile(out, JSON.stringify({ date: new Date().toISOString(), bin: process.env['TWINLAYER_BENCH_BIN'] ?? null, idle: point.idle, staging: point.staging, stageAllMs: point.stageAllMs }, null, 2) + '\n');
  log(`wrote ${out}`);
} finally {
  if (cluster) await stopCluster(cluster).catch((err: unknown) => log(`cleanup: ${String(err)}`));
  await rm(base, { recursive: true, force: true });
}
