// `node --import tsx bench/sync-bulk.ts [--mb=206] [--samples=5] [--tag=T] [--debug] [--env=TWINLAYER_K=V ...]` (root; starts engines: heavy lock):
// issue 13's "206 MB write → staged" row alone, as `npm run bench` takes it (sync.ts's bulk change: the container's
// shell writes the file from /dev/urandom; write returned → bucket → twin, then the PutObject/GetObject floors), in
// about 2 min instead of a 10 min run. `TWINLAYER_BENCH_BIN=OTHER/bin/twinlayer.js` measures another tree's build.
// Writes results/<date>-sync-bulk[-T].json with the samples and the pusher's and puller's log lines.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { option, resultsDir, tagOption, withCluster } from './lib/bench-cluster.js';
import { makeServiceImage } from './lib/cluster.js';
import { changeKinds, runSyncWorkload } from './sync.js';

const tag = tagOption();
const mb = Number(option('mb') ?? '206');
const samples = Number(option('samples') ?? '5');
if (![46, 107, 206].includes(mb)) throw new RangeError(`--mb: 46, 107 or 206, got ${mb}`);
if (!Number.isInteger(samples) || samples < 1 || samples > 30) throw new RangeError(`--samples: 1..30, got ${samples}`);
// The agents get only the cluster's environment, not this process's: a knob for an A/B is named here.
const env = Object.fromEntries(process.argv.filter((a) => a.startsWith('--env=')).map((a) => {
  const m = /^--env=(TWINLAYER_[A-Z0-9_]+)=(.*)$/.exec(a);
  if (!m) throw new RangeError(`--env: TWINLAYER_NAME=value, got ${a.slice(6)}`);
  return [m[1]!, m[2]!];
}));
const log = (line: string): void => { process.stdout.write(`${new Date().toISOString()} ${line}\n`); };

await withCluster({ prefix: 'tl-sync-bulk-', log }, async (cluster) => {
  await makeServiceImage(cluster, mb);
  const bulk = changeKinds(mb, 0, samples, 0).filter((c) => c.id === 'bulk');
  let lines: { pusher: string[]; puller: string[] } = { pusher: [], puller: [] };
  const [point] = await runSyncWorkload(cluster, mb, {
    pollIntervalMs: 20, headPollMs: 5, changes: bulk, log, ...(Object.keys(env).length > 0 ? { env } : {}), ...(process.argv.includes('--debug') ? { logLevel: 'debug' as const } : {}),
    keepLines: (pusher, puller) => { lines = { pusher: [...pusher], puller: [...puller] }; },
  });
  if (!point) throw new Error('no sync point');
  const floors = (point.floorPut.median + (point.floorGet?.median ?? 0));
  log(`${mb} MB bulk, ${samples} samples: → bucket ${point.bucket.median} ms, → twin ${point.twin.median} ms (samples: ${point.samples.map((s) => Math.round(s.twinMs)).join(', ')}), ` +
    `floors put ${point.floorPut.median} + get ${point.floorGet?.median} ms, twin ÷ floors ${(point.twin.median / floors).toFixed(2)}×, commits ${point.commits.median}, ` +
    `pusher peak RSS ${JSON.stringify(point.usage['pusher'])}`);
  const out = join(resultsDir, `${new Date().toISOString().slice(0, 10)}-sync-bulk${tag ? `-${tag}` : ''}.json`);
  await writeFile(out, JSON.stringify({ date: new Date().toISOString(), bin: process.env['TWINLAYER_BENCH_BIN'] ?? null, env, point, lines }, null, 2) + '\n');
  log(`wrote ${out}`);
});
