// The targets of issue 13 ("Lean and fast"), each beside its floor and the figure measured before the work, from one
// `npm run bench` run: the sync and recovery workloads (report.ts's BenchResult), the scale run (bench/scale.ts: 1
// and 200 containers) and the start-up run (bench/startup.ts). Pure: the runs write their JSON, this reads it.
import { z } from 'zod';
import type { BenchResult } from './report.js';
import { formatMs, formatRatio, formatSeconds, NONE } from './lib/format.js';
import { ratio } from './lib/stats.js';

/** What the scale run's JSON holds that a target needs (bench/scale.ts ScalePoint). */
const scaleSchema = z.object({
  points: z.array(z.object({
    containers: z.number(),
    sync: z.object({ median: z.number() }),
    idle: z.object({
      pollIntervalMs: z.number(),
      pusher: z.object({ cpuPercent: z.number(), rssMB: z.number() }),
      puller: z.object({ cpuPercent: z.number(), rssMB: z.number() }),
    }),
    master: z.object({ totalMs: z.number().nullable(), answered: z.number(), floorMs: z.number().nullable(), ratio: z.number().nullable() }),
  })),
});
export type ScaleRun = z.infer<typeof scaleSchema>;

/** What the start-up run's JSON holds that a target needs (bench/startup.ts). */
const startupSchema = z.object({
  command: z.string(),
  results: z.array(z.object({ variant: z.string(), hookMs: z.object({ median: z.number() }) })),
});
export type StartupRun = z.infer<typeof startupSchema>;

export function parseScaleRun(json: unknown): ScaleRun {
  return scaleSchema.parse(json);
}
export function parseStartupRun(json: unknown): StartupRun {
  return startupSchema.parse(json);
}

export interface TargetRow {
  figure: string;
  /** As the issue measured it before the work (bench/results/2026-11-27.md and its own trials). */
  previous: string;
  now: string;
  floor: string;
  target: string;
  /** null: not measured in this run. */
  met: boolean | null;
}


/** The eight rows of the issue's table, in its order. */
export function targetRows(bench: BenchResult | null, scale: ScaleRun | null, startup: StartupRun | null): TargetRow[] {
  const sync = bench?.sync ?? [];
  const small = sync.filter((p) => p.change === '4KiB').sort((a, b) => a.imageMB - b.imageMB);
  const sizes = small.map((p) => p.imageMB).join('/');
  const bulk = sync.find((p) => p.change === 'bulk' && p.imageMB === 206);
  const bulkFloor = bulk?.floorGet === undefined ? null : bulk.floorPut.median + bulk.floorGet.median;
  const idleRec = (bench?.recovery ?? []).slice().sort((a, b) => b.containers - a.containers)[0];
  const idle = idleRec?.idle?.find((i) => i.pollIntervalMs === 250) ?? idleRec?.idle?.at(-1);
  const idleRss = idle?.pusherRssMB === undefined || idle.pullerRssMB === undefined ? null : Math.max(idle.pusherRssMB, idle.pullerRssMB);
  const peak = bulk === undefined ? null : Math.max(bulk.usage['pusher']?.peakRssMB ?? Number.NaN, bulk.usage['puller']?.peakRssMB ?? Number.NaN);
  const points = scale?.points ?? [];
  const one = points.find((p) => p.containers === 1);
  const many = points.filter((p) => p.containers > 1).sort((a, b) => b.containers - a.containers)[0];
  const bin = startup?.results.find((r) => r.variant === 'bin');
  const poll = bench?.plan['pollIntervalMs'];
  const pollMs = typeof poll === 'number' ? poll : 20;
  const masterRatio = many === undefined ? null : many.master.ratio;
  const syncRatio = one === undefined || many === undefined ? null : ratio(many.sync.median, one.sync.median);
  return [
    {
      figure: `4 KiB write → commit in the bucket, ${sizes || '46/107/206'} MB images`,
      previous: '85 / 84 / 83 ms',
      now: small.length === 0 ? NONE : small.map((p) => formatMs(p.bucket.median)).join(' / '),
      floor: small.length === 0 ? NONE : `PutObject ${small.map((p) => formatMs(p.floorPut.median)).join(' / ')}`,
      target: '≤ 50 ms at every size',
      met: small.length === 0 ? null : small.every((p) => p.bucket.median <= 50),
    },
    {
      figure: `4 KiB write → staged in the twin (bench poll ${pollMs} ms)`,
      previous: '123 / 121 / 116 ms',
      now: small.length === 0 ? NONE : small.map((p) => formatMs(p.twin.median)).join(' / '),
      floor: small.length === 0 || small.some((p) => p.floorGet === undefined) ? NONE : `PutObject + GetObject ${small.map((p) => formatMs(p.floorPut.median + (p.floorGet?.median ?? 0))).join(' / ')}`,
      target: '≤ 100 ms',
      met: small.length === 0 ? null : small.every((p) => p.twin.median <= 100),
    },
    {
      figure: '206 MB write → staged',
      previous: '5.2 s (PutObject floor 1.6 s)',
      now: bulk === undefined ? NONE : `${formatSeconds(bulk.twin.median)} (${formatRatio(bulkFloor === null ? null : ratio(bulk.twin.median, bulkFloor))} the floors)`,
      floor: bulk === undefined || bulk.floorGet === undefined ? NONE : `PutObject ${formatSeconds(bulk.floorPut.median)} + GetObject ${formatSeconds(bulk.floorGet.median)}`,
      target: '≤ 1.5 × (PutObject + GetObject)',
      met: bulk === undefined || bulkFloor === null ? null : bulk.twin.median <= 1.5 * bulkFloor,
    },
    {
      figure: `RSS per process, ${idleRec?.containers ?? 40} containers idle / during a 206 MB change`,
      previous: '150–220 MB peak',
      now: `${idle?.pusherRssMB === undefined ? NONE : `${idle.pusherRssMB} / ${idle.pullerRssMB} MB (push / pull)`} / ${bulk === undefined ? NONE : `peak ${bulk.usage['pusher']?.peakRssMB} / ${bulk.usage['puller']?.peakRssMB} MB`}`,
      floor: NONE,
      target: '≤ 120 MB / ≤ 200 MB',
      met: idleRss === null || peak === null || !Number.isFinite(peak) ? null : idleRss <= 120 && peak <= 200,
    },
    {
      figure: `idle CPU per process with ${many?.containers ?? 200} containers`,
      previous: 'standby 20 %, primary 6 % of a core',
      now: many === undefined ? NONE : `standby ${many.idle.puller.cpuPercent} %, primary ${many.idle.pusher.cpuPercent} % (poll ${many.idle.pollIntervalMs} ms)`,
      floor: one === undefined ? NONE : `1 container: ${one.idle.puller.cpuPercent} % / ${one.idle.pusher.cpuPercent} %`,
      target: '< 1 %',
      met: many === undefined ? null : many.idle.puller.cpuPercent < 1 && many.idle.pusher.cpuPercent < 1,
    },
    {
      figure: `process start → hook answering (\`twinlayer ${startup?.command ?? 'agent'}\`)`,
      previous: 'about 1 s of transpiling first',
      now: bin === undefined ? NONE : formatMs(bin.hookMs.median),
      floor: NONE,
      target: '≤ 300 ms',
      met: bin === undefined ? null : bin.hookMs.median <= 300,
    },
    {
      figure: `MASTER → ${many?.containers ?? 200} twins answering`,
      previous: '117 of 200 running at the 15 s timeout',
      now: many === undefined ? NONE : `${formatMs(many.master.totalMs)}, ${many.master.answered} of ${many.containers} (${formatRatio(masterRatio)} the floor)`,
      floor: many === undefined ? NONE : `Docker API ${formatMs(many.master.floorMs)}`,
      target: '≤ 1.1 × Docker API floor, all of them',
      met: many === undefined || masterRatio === null ? null : many.master.answered === many.containers && masterRatio <= 1.1,
    },
    {
      figure: `sync latency with ${many?.containers ?? 200} containers protected`,
      previous: 'not measured',
      now: many === undefined ? NONE : `${formatMs(many.sync.median)} (${formatRatio(syncRatio)} the 1-container figure)`,
      floor: one === undefined ? NONE : `1 container: ${formatMs(one.sync.median)}`,
      target: '≤ 1.2 × the 1-container figure',
      met: syncRatio === null || !Number.isFinite(syncRatio) ? null : syncRatio <= 1.2,
    },
  ];
}

export function renderTargets(rows: readonly TargetRow[], sources: string): string {
  const cell = (x: string): string => x.replace(/\|/g, '\\|');
  return [
    '## Targets of issue 13, beside the floor and the figure before',
    '',
    sources,
    '',
    '| figure | before | now | floor | target | met |',
    '|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${[r.figure, r.previous, r.now, r.floor, r.target, r.met === null ? 'not measured' : r.met ? 'yes' : '**no**'].map(cell).join(' | ')} |`),
    '',
  ].join('\n');
}
