// The chaos soak's pure parts: the seeded schedule (replayable, every kind of fault, enough kills, outages that
// fit), the leak criterion, and the accounting of overlapping faults.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { FaultLog } from '../../../bench/chaos/faults.js';
import { heapFloor, judgeLife, judgeSeries, type Series } from '../../../bench/chaos/leak.js';
import { countKinds, drawSchedule, FAULT_KINDS, fullPlan, quickPlan } from '../../../bench/chaos/plan.js';
import { Prng } from '../../../bench/chaos/prng.js';
import { drawOp } from '../../../bench/chaos/workload.js';

describe('chaos schedule', () => {
  it('is the same for the same seed and differs for another', () => {
    const a = drawSchedule(quickPlan(), new Prng(42));
    assert.deepEqual(drawSchedule(quickPlan(), new Prng(42)), a);
    assert.notDeepEqual(drawSchedule(quickPlan(), new Prng(43)), a);
  });

  it('has every kind of fault in a quick run, and at least 100 kills and a 5-minute outage in the full run', () => {
    for (let seed = 0; seed < 20; seed++) {
      const quick = countKinds(drawSchedule(quickPlan(), new Prng(seed)));
      for (const k of FAULT_KINDS) assert.ok(quick[k] >= 1, `seed ${seed}: no ${k} in the quick schedule`);
      const plan = fullPlan();
      const full = drawSchedule(plan, new Prng(seed));
      const counts = countKinds(full);
      assert.ok(counts['kill-pusher'] + counts['kill-puller'] + counts['kill-engine-primary'] + counts['kill-engine-standby'] >= 100);
      assert.ok(full.some((f) => f.kind === 'outage' && f.ms === 300_000));
      for (const f of full) assert.ok(f.at >= 0 && f.at < plan.soakMs);
      const agentKills = full.filter((f) => f.kind === 'kill-pusher' || f.kind === 'kill-puller' || f.kind === 'failover-kill');
      assert.ok(agentKills.every((f) => f.at < plan.soakMs - plan.agentKillFreeTailMs), 'no agent kill in the tail');
    }
  });

  it('has failovers of both kinds in the middle of every soak, a kill of the whole host first, one every 8-9 min in the full run', () => {
    for (let seed = 0; seed < 20; seed++) {
      for (const plan of [quickPlan(), fullPlan(), fullPlan(12)]) {
        const fo = drawSchedule(plan, new Prng(seed)).filter((f) => f.kind === 'failover-kill' || f.kind === 'failover-keepalived');
        assert.equal(fo.length, plan.failovers);
        assert.equal(fo[0]?.kind, 'failover-kill', `seed ${seed}, ${plan.mode}: the first failover kills the host`);
        assert.ok(fo.some((f) => f.kind === 'failover-keepalived'), `seed ${seed}, ${plan.mode}: a keepalived stop too`);
        for (const f of fo) assert.ok(f.at >= plan.soakMs * 0.1 && f.at < plan.soakMs - plan.failoverRoomMs, `seed ${seed}, ${plan.mode}: failover at ${f.at} ms`);
      }
    }
    assert.equal(fullPlan().failovers, 5);
    assert.equal(fullPlan().containers, 40);
  });

  it('draws the faults of a seed as before failovers existed (replays stay replays)', () => {
    const withFailovers = drawSchedule(fullPlan(12), new Prng(20261206)).filter((f) => f.kind !== 'failover-kill' && f.kind !== 'failover-keepalived');
    const without = drawSchedule({ ...fullPlan(12), failovers: 0 }, new Prng(20261206));
    assert.deepEqual(withFailovers, without);
  });

  it('places outages without overlap, each ending before the soak does', () => {
    for (let seed = 0; seed < 50; seed++) {
      const plan = fullPlan();
      const outages = drawSchedule(plan, new Prng(seed)).filter((f) => f.kind === 'outage').map((f) => ('ms' in f ? [f.at, f.at + f.ms] : [0, 0]));
      outages.sort((x, y) => (x[0] ?? 0) - (y[0] ?? 0));
      for (let i = 1; i < outages.length; i++) assert.ok((outages[i]?.[0] ?? 0) >= (outages[i - 1]?.[1] ?? 0), `seed ${seed}: outages overlap`);
      assert.ok((outages.at(-1)?.[1] ?? 0) <= plan.soakMs);
    }
  });

  it('draws writes as shell scripts that never fail the exec', () => {
    const prng = new Prng(7);
    const ops = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const { op, script } = drawOp(prng);
      ops.add(op);
      assert.match(script, /^\{ .*; \} >\/dev\/null 2>&1; exit 0$/s);
    }
    assert.equal(ops.size, 17, 'every operation drawn');
  });
});

describe('leak criterion', () => {
  const bounds = { warmUpMs: 10_000, minWindowMs: 60_000, rssGrowthMb: 48, rssGrowthFraction: 0.25, fdGrowth: 24 };
  const series = (f: (t: number) => { rssMb: number; fds: number }, lengthMs = 300_000): Series => ({
    name: 'p', pid: 1, startedAt: 0,
    samples: Array.from({ length: lengthMs / 5000 + 1 }, (_, i) => ({ t: i * 5000, ...f(i * 5000) })),
  });

  it('passes a flat process with a GC sawtooth and a burst of descriptors', () => {
    const v = judgeSeries(series((t) => ({ rssMb: 150 + ((t / 5000) % 6) * 8, fds: t > 100_000 && t < 120_000 ? 90 : 40 })), bounds);
    assert.equal(v.judged, true);
    assert.equal(v.leak, false, v.note);
  });

  it('finds memory that grows steadily, and descriptors that are never closed', () => {
    assert.equal(judgeSeries(series((t) => ({ rssMb: 150 + t / 3000, fds: 40 })), bounds).leak, true);
    const fd = judgeSeries(series((t) => ({ rssMb: 150, fds: 40 + Math.floor(t / 5000) })), bounds);
    assert.equal(fd.leak, true);
    assert.match(fd.note, /descriptors grow/);
  });

  it('does not judge a life shorter than the window, nor its warm-up', () => {
    assert.equal(judgeSeries(series((t) => ({ rssMb: 100 + t, fds: 40 }), 50_000), bounds).judged, false);
    assert.equal(judgeSeries(series((t) => ({ rssMb: t < 10_000 ? 50 + t / 100 : 150, fds: 40 })), bounds).leak, false, 'growth in the warm-up is not judged');
  });
  it('judges growth within one role: a step at a failover is not a leak, growth after it is', () => {
    const step = series((t) => ({ rssMb: t < 120_000 ? 150 : 230, fds: 40 }));
    assert.equal(judgeSeries(step, bounds).leak, true, 'the whole life: the step looks like growth');
    const v = judgeLife(step, bounds, [{ from: 110_000, to: 140_000 }]);
    assert.equal(v.judged, true, v.note);
    assert.equal(v.leak, false, v.note);
    const after = judgeLife(series((t) => ({ rssMb: t < 120_000 ? 150 : 150 + (t - 120_000) / 1000, fds: 40 })), bounds, [{ from: 110_000, to: 140_000 }]);
    assert.equal(after.leak, true, `growth after the switch: ${after.note}`);
    const before = judgeLife(series((t) => ({ rssMb: t < 110_000 ? 150 + t / 1000 : 300, fds: 40 })), bounds, [{ from: 110_000, to: 140_000 }]);
    assert.equal(before.leak, true, `growth before the switch: ${before.note}`);
    const unjudged = judgeLife(series((t) => ({ rssMb: 150 + t, fds: 40 })), bounds, [{ from: 50_000, to: 260_000 }]);
    assert.equal(unjudged.judged, false, 'no stretch long enough');
    assert.match(unjudged.note, /switch/);
  });

  it('judges the heap over the whole life, role switches included', () => {
    const withHeap = (heap: (t: number) => number): Series => {
      const s = series((t) => ({ rssMb: t < 120_000 ? 150 : 230, fds: 40 }));
      return { ...s, samples: s.samples.map((x) => ({ ...x, heapMb: heap(x.t) })) };
    };
    const flat = judgeLife(withHeap((t) => 40 + ((t / 5000) % 4) * 6), bounds, [{ from: 110_000, to: 140_000 }]);
    assert.equal(flat.leak, false, flat.note);
    assert.match(flat.note, /heap flat/);
    const growing = judgeLife(withHeap((t) => 40 + t / 2000), bounds, [{ from: 50_000, to: 260_000 }]);
    assert.equal(growing.judged, true, growing.note);
    assert.equal(growing.leak, true, `a heap that grows across switches: ${growing.note}`);
  });

  it('judges the heap by its floor: garbage between collections (a sawtooth up to 200 MB) is not growth', () => {
    const withHeap = (heap: (t: number) => number): Series => {
      const s = series(() => ({ rssMb: 150, fds: 40 }));
      return { ...s, samples: s.samples.map((x) => ({ ...x, heapMb: heap(x.t) })) };
    };
    // A live set of 50 MB, garbage piling up to 200 MB more between major GCs 20 s apart, and more of it late.
    const sawtooth = judgeLife(withHeap((t) => 50 + ((t % 20_000) / 20_000) * (t > 150_000 ? 200 : 40)), bounds, []);
    assert.equal(sawtooth.judged, true, sawtooth.note);
    assert.equal(sawtooth.leak, false, sawtooth.note);
    // The floor itself rising is a leak, sawtooth or not.
    const rising = judgeLife(withHeap((t) => 50 + t / 2000 + ((t % 20_000) / 20_000) * 40), bounds, []);
    assert.equal(rising.leak, true, rising.note);
    assert.deepEqual(heapFloor([{ t: 0, mb: 90 }, { t: 10_000, mb: 50 }, { t: 60_000, mb: 80 }]).map((x) => x.mb), [50, 50, 80]);
  });
});

describe('fault accounting', () => {
  it('counts the union of other blocking faults, not the fault itself nor instant ones', () => {
    let t = 0;
    const log = new FaultLog(() => t);
    const a = log.begin('outage', '');
    t = 10;
    const b = log.begin('kill-pusher', '');
    t = 20;
    log.end(a);
    log.begin('reset', '', true);
    t = 30;
    log.end(b);
    assert.equal(log.blockedMs(0, 40), 30);
    assert.equal(log.blockedMs(0, 40, a.id), 20);
    assert.equal(log.blockedMs(25, 40, a.id), 5);
    assert.equal(log.blocked(), false);
  });

});
