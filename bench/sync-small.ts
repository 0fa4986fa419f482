// `node --import tsx bench/sync-small.ts [--mb=46,107,206] [--samples=15] [--tag=T] [--debug]` (root; starts engines:
// heavy lock): issue 13's "4 KiB write → staged in the twin" rows alone, as `npm run bench` takes them (sync.ts's 4 KiB
// change, bench puller poll 20 ms, head poll 5 ms), without the 1 MB and bulk changes, the floors' bulk samples or
// lsyncd: some 3 min instead of a 10 min quick run. `TWINLAYER_BENCH_BIN=OTHER/bin/twinlayer.js` measures another
// tree's build (a before/after pair runs back to back). With --debug the puller logs each poll's steps (TWINLAYER_
// LOG_LEVEL=debug), kept in the JSON.
// Writes results/<date>-sync-small[-T].json with the samples and the puller's log lines.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeServiceImage, startCluster, stopCluster, type Cluster } from './lib/cluster.js';
import { changeKinds, runSyncWorkload, type SyncPoint } from './sync.js';

const arg = (name: string): string | undefined => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const tag = arg('tag')?.replace(/[^\w-]/g, '') ?? '';
const sizes = (arg('mb') ?? '46,107,206').split(',').map(Number);
const samples = Number(arg('samples') ?? '15');
for (const mb of sizes) if (![46, 107, 206].includes(mb)) throw new RangeError(`--mb: 46, 107 or 206, got ${mb}`);
if (!Number.isInteger(samples) || samples < 1 || samples > 60) throw new RangeError(`--samples: 1..60, got ${samples}`);
const resultsDir = join(dirname(fileURLToPath(import.meta.url)), 'results');
const log = (line: string): void => { process.stdout.write(`${new Date().toISOString()} ${line}\n`); };

const base = await mkdtemp(join(tmpdir(), 'tl-sync-small-'));
let cluster: Cluster | null = null;
const onSignal = (): void => {
  log('interrupted: cleaning up');
  void (cluster ? stopCluster(cluster) : Promise.resolve()).finally(() => rm(base, { recursive: true, force: true })).finally(() => process.exit(130));
};
process.once('SIGINT', onSignal);
process.once('SIGTERM', onSignal);
try {
  cluster = await startCluster(base, () => undefined);
  const points: Array<{ point: SyncPoint; puller: string[] }> = [];
  for (const mb of sizes) {
    await makeServiceImage(cluster, mb);
    // The 4 KiB change only, and no lsyncd samples (the peer is not what this measures).
    const small = changeKinds(mb, samples, 0, 0).filter((c) => c.id === '4KiB').map((c) => ({ ...c, lsyncdSamples: 0 }));
    let puller: string[] = [];
    const [point] = await runSyncWorkload(cluster, mb, {
      pollIntervalMs: 20, headPollMs: 5, changes: small, log, ...(process.argv.includes('--debug') ? { logLevel: 'debug' as const } : {}),
      keepLines: (_pusher, p) => { puller = [...p]; },
    });
    if (!point) throw new Error('no sync point');
    log(`${mb} MB image, 4 KiB, ${samples} samples: → bucket ${point.bucket.median} ms, → twin ${point.twin.median} ms (p90 ${point.twin.p90}), ` +
      `twin − bucket per sample: ${point.samples.map((s) => Math.round(s.twinMs - s.bucketMs)).join(', ')}`);
    points.push({ point, puller });
  }
  const out = join(resultsDir, `${new Date().toISOString().slice(0, 10)}-sync-small${tag ? `-${tag}` : ''}.json`);
  await writeFile(out, JSON.stringify({ date: new Date().toISOString(), bin: process.env['TWINLAYER_BENCH_BIN'] ?? null, samples, points }, null, 2) + '\n');
  log(`wrote ${out}`);
} finally {
  if (cluster) await stopCluster(cluster).catch((err: unknown) => log(`cleanup: ${String(err)}`));
  await rm(base, { recursive: true, force: true });
}
