// `node --import tsx bench/idle-rss.ts [--runs=N] [--tag=T]` (root; starts engines: heavy lock): the RSS row of issue
// 13's targets alone, taken as `npm run bench` takes it — the recovery point of 40 containers of the 46 MB image
// (bench/recovery.ts): push + pull until all 40 are staged (the pusher ships the image meanwhile), then the idle
// windows of 30 s at the bench's 20 ms poll and at the default 250 ms, VmRSS of each process at each window's end.
// Without the other workloads of the run (about 1.5 min instead of 15); `TWINLAYER_BENCH_BIN=OTHER/bin/twinlayer.js`
// measures another tree's build. Writes results/<date>-idle-rss[-T].json.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { intOption, resultsDir, tagOption, withCluster } from './lib/bench-cluster.js';
import { makeServiceImage } from './lib/cluster.js';
import { runRecoveryPoint } from './recovery.js';

const tag = tagOption();
const runs = intOption('runs', 1, 5);
const log = (line: string): void => { process.stdout.write(`${new Date().toISOString()} ${line}\n`); };

await withCluster({ prefix: 'tl-idle-rss-', log }, async (cluster) => {
  await makeServiceImage(cluster, 46);
  const point = await runRecoveryPoint(cluster, 46, 40, { runs, pollIntervalMs: 20, idleWindowMs: 30_000, log });
  for (const w of point.idle ?? []) log(`idle, poll ${w.pollIntervalMs} ms: RSS pusher ${w.pusherRssMB} MB, puller ${w.pullerRssMB} MB`);
  const out = join(resultsDir, `${new Date().toISOString().slice(0, 10)}-idle-rss${tag ? `-${tag}` : ''}.json`);
  await writeFile(out, JSON.stringify({ date: new Date().toISOString(), bin: process.env['TWINLAYER_BENCH_BIN'] ?? null, idle: point.idle, staging: point.staging, stageAllMs: point.stageAllMs }, null, 2) + '\n');
  log(`wrote ${out}`);
});
