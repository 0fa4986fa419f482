// The months bench's summary (pure, synthetic samples): the steady window starts after retention, grace and 30 s;
// requests on clocks are taken per real hour from the idle window (the standby's all, the primary's fence), the
// workload's from the steady window divided by the compression (the standby's above its idle rate, the primary's all
// but the fence); commits from the primary's record PUTs, GC runs from the samples.
import { describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import { summarize, type MonthsResult } from '../../../bench/months.js';
import { S3_PRICES } from '../../../bench/lib/s3-cost.js';

function result(): MonthsResult {
  const samples: MonthsResult['samples'] = [];
  for (let t = 0; t <= 300; t += 15) {
    samples.push({
      t, writes: t * 6, failedWrites: 0, objects: t < 150 ? t * 10 : 1500, bytes: t < 150 ? t * 1e4 : 1.5e6, byObject: {},
      // Every 15 s: 40 head polls by the standby (slower than idle), 30 spec listings (one per head move), 90 record PUTs and
      // 90 blob PUTs by the primary, 90 blob GETs by the standby, 30 fence probes and a GC run of 15 GETs and a LIST.
      requests: t === 0 ? {} : {
        'standby GET head 200': 40, 'standby LIST spec 200': 30, 'primary PUT record 200': 90, 'primary PUT blob 200': 90, 'standby GET blob 200': 90,
        'primary GET claim 404': 30, 'primary GET spec 200': 15, 'primary LIST group 200': 1,
      },
      standbyBehind: 0, gcRuns: t / 15,
    });
  }
  return {
    at: '2026-12-07T03:00:00.000Z', label: '', options: { minutes: 5, containers: 40, writes: 6, retentionS: 60, sampleS: 15, idleS: 60, kib: 16, label: '' },
    compression: 1440, agentEnv: { TWINLAYER_GC_GRACE_MS: '60000' }, node: 'v24', prices: S3_PRICES, samples, setupRequests: {},
    // 60 s idle: 240 head polls and 12 spec listings by the standby, 120 fence probes and 4 GC runs by the primary.
    idle: { seconds: 60, requests: { 'standby GET head 304': 240, 'standby LIST spec 200': 12, 'primary GET claim 404': 120, 'primary GET spec 200': 60, 'primary LIST group 200': 4 } },
    gc: { runs: 0, deleted: {} }, rolesAtEnd: {}, errors: [], durationS: 400,
  };
}

describe('summarize', () => {
  it('the steady window, per real hour by kind, per commit, and the month', () => {
    const s = summarize(result());
    assert.equal(s.fromS, 150, 'the window starts at the sample before the first one after 150 s');
    assert.equal(s.toS, 300);
    assert.deepEqual(s.bytes, { min: 1.5e6, max: 1.5e6, mean: 1.5e6 });
    assert.equal(s.commits, 90 * 10);
    assert.equal(s.gcRuns, 10);
    // Idle, per hour: 14 400 head polls and 720 spec listings by the standby, 7 200 fence probes by the primary (its GC
    // runs are workload).
    assert.deepEqual(s.perHour.standby.clockReal, { GET: 14_400, LIST: 720 });
    assert.deepEqual(s.perHour.primary.clockReal, { GET: 7_200 });
    // Steady, in the bench per hour: the standby's head polls (9 600) are below their idle rate: no workload; its spec
    // listings 7 200 against 720 idle: 6 480 above, 4.5 per real hour; its blob GETs 21 600: 15 per real hour.
    assert.equal(s.perHour.standby.workloadReal['LIST'], 4.5);
    assert.equal(s.perHour.standby.workloadReal['GET'], 15);
    // The primary: 180 PUTs per 15 s = 43 200 an hour, 30 per real hour; GC's 15 GETs and a LIST per run; the fence
    // probes are its clock's, not the workload's.
    assert.equal(s.perHour.primary.workloadReal['PUT'], 30);
    assert.equal(s.perHour.primary.workloadReal['GET'], 2.5);
    assert.equal(s.perHour.standby.real['GET'], 14_415);
    assert.deepEqual(s.perCommit.primary, { PUT: 2 });
    assert.deepEqual(s.perGcRun, { GET: 15, LIST: 1 });
    assert.equal(s.perCommit.standby['GET'], 1);
    assert.equal(Math.round((s.perCommit.standby['LIST'] ?? 0) * 1000), 300, '270 listings above idle, 900 commits');
    // 6 writes/s over 40 containers: 0.15/s in the bench, 0.15 / 1440 * 3600 per real hour.
    assert.equal(Math.round(s.writesPerContainerPerRealHour * 1e6), Math.round((0.15 / 1440) * 3600 * 1e6));
    assert.equal(Math.round(s.monthly.standby * 1e6), Math.round((14_415 * 0.0004 + 724.5 * 0.005) * 730 / 1000 * 1e6));
    assert.ok(Math.abs(s.monthly.total - (s.monthly.storage + s.monthly.primary + s.monthly.standby)) < 1e-12);
  });

  it('refuses a run too short for a steady window, or without an idle window', () => {
    const r = result();
    r.samples = r.samples.filter((x) => x.t <= 150);
    assert.throws(() => summarize(r), /no steady window/);
    const n = result();
    n.idle = { seconds: 0, requests: {} };
    assert.throws(() => summarize(n), /no idle window/);
  });
});
