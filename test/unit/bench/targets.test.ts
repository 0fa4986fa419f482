// The targets table of `npm run bench` (bench/targets.ts): each of issue 13's rows from the runs' results, met or
// not by the issue's own thresholds, and "not measured" rather than a guess when a run is missing.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { BenchResult } from '../../../bench/report.js';
import type { SyncPoint } from '../../../bench/sync.js';
import type { RecoveryPoint } from '../../../bench/recovery.js';
import { parseScaleRun, parseStartupRun, renderTargets, targetRows } from '../../../bench/targets.js';
import { summarize } from '../../../bench/lib/stats.js';

const summary = (median: number): ReturnType<typeof summarize> => summarize([median]);

function syncPoint(imageMB: number, change: SyncPoint['change'], bucket: number, twin: number, put: number, get: number, peaks: [number, number] = [100, 100]): SyncPoint {
  return {
    imageMB, change, bytes: change === 'bulk' ? imageMB * 1e6 : 4096, bucket: summary(bucket), twin: summary(twin), floorPut: summary(put), floorGet: summary(get),
    lsyncd: summary(1), commits: summary(1), usage: { pusher: { cpuSeconds: 1, peakRssMB: peaks[0] }, puller: { cpuSeconds: 1, peakRssMB: peaks[1] } }, samples: [],
  };
}

function bench(o: { small: number; twin: number; bulkTwin: number; idleRss: [number, number]; peaks: [number, number] }): BenchResult {
  const recovery = {
    imageMB: 46, containers: 40,
    idle: [
      { pollIntervalMs: 20, windowSeconds: 30, pusherRequestsPerMinute: 0, pullerRequestsPerMinute: 3000, pusherCpuSeconds: 1, pullerCpuSeconds: 1, pusherRssMB: 500, pullerRssMB: 500 },
      { pollIntervalMs: 250, windowSeconds: 30, pusherRequestsPerMinute: 0, pullerRequestsPerMinute: 264, pusherCpuSeconds: 0.1, pullerCpuSeconds: 0.1, pusherRssMB: o.idleRss[0], pullerRssMB: o.idleRss[1] },
    ],
  } as unknown as RecoveryPoint;
  return {
    date: '2026-12-07T00:00:00Z', mode: 'full', durationSeconds: 1, machine: {}, plan: { pollIntervalMs: 20 }, images: {},
    sync: [
      ...[46, 107, 206].map((mb) => syncPoint(mb, '4KiB', o.small, o.twin, 10, 5)),
      syncPoint(206, 'bulk', 2000, o.bulkTwin, 1600, 1400, o.peaks),
    ],
    profile: [], recovery: [recovery], errors: [],
  };
}

const scale = (many: { cpu: number; sync: number; ratio: number; answered: number }): ReturnType<typeof parseScaleRun> => parseScaleRun({
  points: [
    { containers: 1, sync: { median: 100 }, idle: { pollIntervalMs: 250, pusher: { cpuPercent: 0.5, rssMB: 90 }, puller: { cpuPercent: 0.5, rssMB: 90 } }, master: { totalMs: 300, answered: 1, floorMs: 280, ratio: 1.07 } },
    { containers: 200, sync: { median: many.sync }, idle: { pollIntervalMs: 250, pusher: { cpuPercent: many.cpu, rssMB: 110 }, puller: { cpuPercent: many.cpu, rssMB: 110 } }, master: { totalMs: 15000, answered: many.answered, floorMs: 15000 / many.ratio, ratio: many.ratio } },
  ],
});

const startup = (hookMs: number): ReturnType<typeof parseStartupRun> => parseStartupRun({ command: 'agent', results: [{ variant: 'bin', hookMs: { median: hookMs } }] });

describe('issue 13 targets table', () => {
  it('meets every row when every figure is within its target', () => {
    const rows = targetRows(bench({ small: 40, twin: 90, bulkTwin: 4000, idleRss: [110, 115], peaks: [150, 190] }), scale({ cpu: 0.8, sync: 115, ratio: 1.05, answered: 200 }), startup(250));
    assert.equal(rows.length, 8);
    assert.deepEqual(rows.map((r) => r.met), Array(8).fill(true), JSON.stringify(rows, null, 1));
    // The idle RSS is the default poll's (250 ms), not the bench poll's.
    assert.match(rows[3]!.now, /110 \/ 115 MB/);
    assert.match(rows[2]!.floor, /PutObject 1\.6 s \+ GetObject 1\.4 s/);
  });

  it('fails each row just past its threshold', () => {
    const rows = targetRows(bench({ small: 51, twin: 101, bulkTwin: 4501, idleRss: [121, 100], peaks: [150, 190] }), scale({ cpu: 1, sync: 121, ratio: 1.11, answered: 200 }), startup(301));
    assert.deepEqual(rows.map((r) => r.met), [false, false, false, false, false, false, false, false], JSON.stringify(rows, null, 1));
    const notAll = targetRows(bench({ small: 40, twin: 90, bulkTwin: 4000, idleRss: [110, 115], peaks: [150, 201] }), scale({ cpu: 0.5, sync: 100, ratio: 1.0, answered: 199 }), startup(200));
    assert.equal(notAll[3]!.met, false, 'a peak above 200 MB during the 206 MB change');
    assert.equal(notAll[6]!.met, false, 'a twin that never answered fails MASTER whatever the ratio');
  });

  it('says "not measured" for the rows of a run that is missing', () => {
    const rows = targetRows(bench({ small: 40, twin: 90, bulkTwin: 4000, idleRss: [110, 115], peaks: [150, 190] }), null, null);
    assert.deepEqual(rows.map((r) => r.met), [true, true, true, true, null, null, null, null]);
    const md = renderTargets(rows, 'sources');
    assert.equal((md.match(/not measured/g) ?? []).length, 4 + 1, 'four rows, and the "before" of the sync row at 200 containers');
  });
});
