// The process's metrics registry (src/metrics): what a fresh process exposes, how the replication sources of the
// pusher and the puller are read at each scrape and leave no series behind once removed, and bounded labels. The
// output is checked with the strict parser of test/support/prom-text.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { setTimeout as sleep } from 'node:timers/promises';

import { bucketRequestKinds, failureKinds, Metrics, type ReplicationView } from '../../../src/metrics/index.js';
import { EVENT_LOOP_SAMPLE_MS } from '../../../src/metrics/registry.js';
import { maybeSample, parsePrometheusText, sampleValue, type Family } from '../../support/prom-text.js';

const scrape = async (m: Metrics): Promise<Map<string, Family>> => parsePrometheusText(await m.render());

describe('metrics registry', () => {
  it('a fresh registry: every failure kind and request kind at 0, GC declared without samples, no replication series, process metrics', async () => {
    const f = await scrape(new Metrics());
    for (const kind of failureKinds) assert.equal(sampleValue(f, 'twinlayer_failures_total', { kind }), 0, kind);
    for (const kind of bucketRequestKinds) assert.equal(sampleValue(f, 'twinlayer_bucket_requests_total', { kind }), 0, kind);
    assert.equal(sampleValue(f, 'twinlayer_bucket_bytes_total', { direction: 'up' }), 0);
    assert.equal(sampleValue(f, 'twinlayer_bucket_bytes_total', { direction: 'down' }), 0);
    assert.equal(sampleValue(f, 'twinlayer_image_objects_total', { result: 'uploaded' }), 0);
    assert.equal(sampleValue(f, 'twinlayer_image_bytes_shipped_total'), 0);
    for (const name of ['twinlayer_gc_runs_total', 'twinlayer_gc_deleted_objects_total', 'twinlayer_gc_deleted_bytes_total']) {
      assert.equal(f.get(name)?.type, 'counter', name);
      assert.ok((f.get(name)?.help ?? '').length > 20, `${name} says what it counts`);
      assert.deepEqual(f.get(name)?.samples, [], `${name}: GC has not run, so no value is shown`);
    }
    for (const name of ['twinlayer_replication_lag_seconds', 'twinlayer_replication_lag_commits', 'twinlayer_last_commit_age_seconds', 'twinlayer_checkpoint_age_seconds']) {
      assert.equal(f.get(name)?.type, 'gauge', name);
      assert.deepEqual(f.get(name)?.samples, [], name);
    }
    assert.equal(f.get('process_resident_memory_bytes')?.type, 'gauge');
    assert.equal(f.get('nodejs_eventloop_lag_seconds')?.type, 'gauge');
  });

  it('the event-loop lag, sampled every EVENT_LOOP_SAMPLE_MS, still shows a stall longer than that', async () => {
    const m = new Metrics();
    await sleep(2 * EVENT_LOOP_SAMPLE_MS);
    const stallMs = 4 * EVENT_LOOP_SAMPLE_MS;
    const until = Date.now() + stallMs;
    while (Date.now() < until) { /* the loop is blocked */ }
    await sleep(2 * EVENT_LOOP_SAMPLE_MS);
    const max = sampleValue(await scrape(m), 'nodejs_eventloop_lag_max_seconds');
    // The sample due during the stall comes late by the stall less at most one interval.
    assert.ok(max >= (stallMs - EVENT_LOOP_SAMPLE_MS) / 1000, `lag max ${max} s after a ${stallMs} ms stall`);
  });

  it('counts requests by kind, bytes by direction, failures, commits, GC results', async () => {
    const m = new Metrics({ processMetrics: false });
    m.bucketRequest('GET');
    m.bucketRequest('GET');
    m.bucketRequest('LIST');
    m.bucketBytes('up', 1000);
    m.bucketBytes('down', 0);
    m.failure('stage');
    m.commitPublished('full');
    m.commitStaged('delta');
    m.gcRun('ok');
    m.gcDeleted('blob', 3, 4096);
    m.gcDeleted('image', 1, 10);
    m.imageObject('present');
    m.imageObject('uploaded', 700);
    m.imageObject('uploaded', 300);
    const f = await scrape(m);
    assert.equal(sampleValue(f, 'twinlayer_gc_deleted_objects_total', { kind: 'image' }), 1);
    assert.equal(sampleValue(f, 'twinlayer_image_objects_total', { result: 'present' }), 1);
    assert.equal(sampleValue(f, 'twinlayer_image_objects_total', { result: 'uploaded' }), 2);
    assert.equal(sampleValue(f, 'twinlayer_image_bytes_shipped_total'), 1000);
    assert.equal(sampleValue(f, 'twinlayer_bucket_requests_total', { kind: 'GET' }), 2);
    assert.equal(sampleValue(f, 'twinlayer_bucket_requests_total', { kind: 'LIST' }), 1);
    assert.equal(sampleValue(f, 'twinlayer_bucket_requests_total', { kind: 'PUT' }), 0);
    assert.equal(sampleValue(f, 'twinlayer_bucket_bytes_total', { direction: 'up' }), 1000);
    assert.equal(sampleValue(f, 'twinlayer_bucket_bytes_total', { direction: 'down' }), 0);
    assert.equal(sampleValue(f, 'twinlayer_failures_total', { kind: 'stage' }), 1);
    assert.equal(sampleValue(f, 'twinlayer_commits_published_total', { kind: 'full' }), 1);
    assert.equal(sampleValue(f, 'twinlayer_commits_staged_total', { kind: 'delta' }), 1);
    assert.equal(sampleValue(f, 'twinlayer_gc_runs_total', { result: 'ok' }), 1);
    assert.equal(sampleValue(f, 'twinlayer_gc_deleted_objects_total', { kind: 'blob' }), 3);
    assert.equal(sampleValue(f, 'twinlayer_gc_deleted_bytes_total', { kind: 'blob' }), 4096);
    assert.equal(f.get('process_cpu_user_seconds_total'), undefined, 'process metrics off');
  });

  it('replication sources are read at each scrape, per container and side; ages from the scrape time; removed, they leave nothing', async () => {
    const m = new Metrics({ processMetrics: false });
    let standby: ReplicationView[] = [];
    const t0 = Date.now();
    const remove = m.addReplicationSource({ side: 'standby', views: () => standby });
    m.addReplicationSource({
      side: 'primary',
      views: (now) => [{ container: 'dns', lagMs: 0, lagCommits: 0, lastCommitAt: now - 90_000, lastCheckpointAt: null }],
    });
    standby = [
      { container: 'dns', lagMs: 2500, lagCommits: 3, lastCommitAt: t0 - 10_000, lastCheckpointAt: t0 - 3_600_000 },
      { container: 'web', lagMs: 0, lagCommits: 0, lastCommitAt: null, lastCheckpointAt: null },
    ];
    let f = await scrape(m);
    assert.equal(sampleValue(f, 'twinlayer_replication_lag_seconds', { container: 'dns', side: 'standby' }), 2.5);
    assert.equal(sampleValue(f, 'twinlayer_replication_lag_commits', { container: 'dns', side: 'standby' }), 3);
    assert.equal(sampleValue(f, 'twinlayer_replication_lag_seconds', { container: 'web', side: 'standby' }), 0);
    assert.equal(sampleValue(f, 'twinlayer_replication_lag_seconds', { container: 'dns', side: 'primary' }), 0);
    assert.equal(sampleValue(f, 'twinlayer_last_commit_age_seconds', { container: 'dns', side: 'primary' }), 90);
    const age = sampleValue(f, 'twinlayer_last_commit_age_seconds', { container: 'dns', side: 'standby' });
    assert.ok(age >= 10 && age < 70, `age ${age}`);
    assert.ok(sampleValue(f, 'twinlayer_checkpoint_age_seconds', { container: 'dns', side: 'standby' }) >= 3600);
    assert.equal(maybeSample(f, 'twinlayer_last_commit_age_seconds', { container: 'web' }), undefined, 'unknown: no sample, never a made-up 0');
    assert.equal(maybeSample(f, 'twinlayer_checkpoint_age_seconds', { side: 'primary' }), undefined);

    standby = [{ container: 'dns', lagMs: 0, lagCommits: 0, lastCommitAt: t0, lastCheckpointAt: t0 - 3_600_000 }];
    f = await scrape(m);
    assert.equal(sampleValue(f, 'twinlayer_replication_lag_commits', { container: 'dns', side: 'standby' }), 0);
    assert.equal(maybeSample(f, 'twinlayer_replication_lag_seconds', { container: 'web' }), undefined, 'a container the source no longer names is gone');

    remove();
    f = await scrape(m);
    assert.equal(maybeSample(f, 'twinlayer_replication_lag_seconds', { side: 'standby', container: 'dns' }), undefined);
    assert.equal(sampleValue(f, 'twinlayer_replication_lag_seconds', { side: 'primary', container: 'dns' }), 0);
  });

  it('labels are bounded: container and fixed sets only, never a digest, key or path', async () => {
    const m = new Metrics({ processMetrics: false });
    m.addReplicationSource({ side: 'standby', views: () => [{ container: 'dns', lagMs: 1, lagCommits: 1, lastCommitAt: 0, lastCheckpointAt: 0 }] });
    m.failure('bucket');
    const allowed = new Set(['container', 'side', 'kind', 'direction', 'result']);
    for (const f of (await scrape(m)).values()) {
      if (!f.name.startsWith('twinlayer_')) continue;
      for (const s of f.samples) {
        for (const [k, v] of Object.entries(s.labels)) {
          assert.ok(allowed.has(k), `${f.name} has label ${k}`);
          assert.doesNotMatch(v, /[0-9a-f]{64}|\//, `${f.name}{${k}="${v}"}`);
        }
      }
    }
  });
});
