// The months bench's summary (pure, synthetic samples): the steady window starts after retention, grace and 30 s;
// requests on a clock are taken per real hour as measured, the workload's divided by the compression; commits and
// requests per commit from the primary's record PUTs.
import { describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import { summarize, type MonthsResult } from '../../../bench/months.js';
import { S3_PRICES } from '../../../bench/lib/s3-cost.js';

function result(): MonthsResult {
  const samples: MonthsResult['samples'] = [];
  for (let t = 0; t <= 300; t += 15) {
    samples.push({
      t, writes: t * 6, failedWrites: 0, objects: t < 150 ? t * 10 : 1500, bytes: t < 150 ? t * 1e4 : 1.5e6, byObject: {},
      // Every 15 s: 60 head polls by the standby (clock), 90 record PUTs and 90 blob PUTs by the primary, 90 blob GETs by the standby.
      requests: t === 0 ? {} : {
        'standby GET head 304': 60, 'primary PUT record 200': 90, 'primary PUT blob 200': 90, 'standby GET blob 200': 90, 'primary GET claim 404': 30,
      },
      standbyBehind: 0, gcRuns: t,
    });
  }
  return {
    at: '2026-12-07T03:00:00.000Z', label: '', options: { minutes: 5, containers: 40, writes: 6, retentionS: 60, sampleS: 15, kib: 16, label: '' },
    compression: 1440, agentEnv: { TWINLAYER_GC_GRACE_MS: '60000' }, node: 'v24', prices: S3_PRICES, samples, setupRequests: {},
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
    // 60 polls per 15 s = 14 400 an hour, on the clock; 30 fence probes = 7 200.
    assert.equal(s.perHour.standby.clockReal['GET'], 14_400);
    assert.equal(s.perHour.primary.clockReal['GET'], 7_200);
    // 180 PUTs per 15 s = 43 200 an hour in the bench: 30 per real hour.
    assert.equal(s.perHour.primary.workloadReal['PUT'], 30);
    assert.equal(s.perHour.standby.workloadReal['GET'], 15);
    assert.equal(s.perHour.standby.real['GET'], 14_415);
    assert.deepEqual(s.perCommit.primary, { PUT: 2 });
    assert.deepEqual(s.perCommit.standby, { GET: 1 });
    // 6 writes/s over 40 containers: 0.15/s in the bench, 0.15 / 1440 * 3600 per real hour.
    assert.equal(Math.round(s.writesPerContainerPerRealHour * 1e6), Math.round((0.15 / 1440) * 3600 * 1e6));
    assert.equal(Math.round(s.monthly.standby * 1e6), Math.round(14_415 * 730 / 1000 * 0.0004 * 1e6));
    assert.ok(Math.abs(s.monthly.total - (s.monthly.storage + s.monthly.primary + s.monthly.standby)) < 1e-12);
  });

  it('refuses a run too short for a steady window', () => {
    const r = result();
    r.samples = r.samples.filter((x) => x.t <= 150);
    assert.throws(() => summarize(r), /no steady window/);
  });
});
