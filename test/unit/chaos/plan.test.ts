// The chaos soak's pure parts: the seeded schedule (replayable, every kind of fault, enough kills, outages that
// fit), the leak criterion, and the accounting of overlapping faults.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { FaultLog } from '../../../bench/chaos/faults.js';
import { judgeLife, judgeSeries, type Series } from '../../../bench/chaos/leak.js';
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
    // The last failover's new primary keeps its role to the end: room for its promotion (15 s at most here, under
    // faults), the warm-up and a window, so a quick soak always has a life to judge.
    const quick = quickPlan();
    assert.ok(quick.failoverRoomMs >= 15_000 + quick.leak.warmUpMs + quick.leak.minWindowMs, `quick: ${quick.failoverRoomMs} ms of room`);
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
  const bounds = { warmUpMs: 10_000, minWindowMs: 60_000, rssGrowthMb: 48, rssGrowthFraction: 0.25, fdGrowth: 24, rssAfterSwitch: true };
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

  it('judges RSS less the garbage not yet collected where the status gave it: garbage between major GCs is not growth', () => {
    // RSS climbing 100 MB as the garbage since the last major GC climbs with it.
    const garbage = series((t) => ({ rssMb: 150 + t / 3000, fds: 40 }));
    const lessBy = (s: Series, g: (t: number) => number, has: (i: number) => boolean = () => true): Series =>
      ({ ...s, samples: s.samples.map((x, i) => (has(i) ? { ...x, rssLessGarbageMb: x.rssMb - g(x.t) } : x)) });
    const v = judgeSeries(lessBy(garbage, (t) => t / 3000), bounds);
    assert.equal(v.judged, true, v.note);
    assert.equal(v.leak, false, v.note);
    assert.equal(v.lessGarbage, true);
    // The same RSS with no garbage: native memory (or a heap growing from GC to GC) grows.
    const native = judgeSeries(lessBy(garbage, () => 0), bounds);
    assert.equal(native.leak, true, native.note);
    assert.match(native.note, /less the garbage/);
    // Without the status's figures in half the samples, or in the last quarter, RSS is judged whole.
    assert.equal(judgeSeries(lessBy(garbage, (t) => t / 3000, (i) => i % 3 === 0), bounds).leak, true, 'sparse: raw RSS judged');
    const n = garbage.samples.length;
    const lastQuarterMissing = judgeSeries(lessBy(garbage, (t) => t / 3000, (i) => i < n * 0.7), bounds);
    assert.equal(lastQuarterMissing.leak, true, `an agent whose status stopped answering is judged on raw RSS: ${lastQuarterMissing.note}`);
    assert.equal(lastQuarterMissing.lessGarbage, false);
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
    // A switch is each host's own: the promoted host is judged from its promotion on, while the old primary is still
    // on its way back as the standby (a minute in the quick soak).
    const flatLife = series(() => ({ rssMb: 150, fds: 40 }));
    const failover = [{ host: 'b', from: 60_000, to: 68_000 }, { host: 'a', from: 60_000, to: 260_000 }];
    const promoted = judgeLife({ ...flatLife, host: 'b' }, bounds, failover);
    assert.equal(promoted.judged, true, promoted.note);
    assert.equal(promoted.leak, false, promoted.note);
    const demoted = judgeLife({ ...flatLife, host: 'a' }, bounds, failover);
    assert.equal(demoted.judged, false, `the old primary's switch is its own: ${demoted.note}`);
    // The quick soak judges a stretch begun at a switch by its heap level and descriptors, not its RSS: RSS climbing
    // after a promotion (the allocator keeping the new role's bursts) is no leak when the heap stays level.
    const climbing = series((t) => ({ rssMb: t < 68_000 ? 150 : 150 + (t - 68_000) / 1000, fds: 40 }));
    const quickBounds = { ...bounds, rssAfterSwitch: false };
    const rssClimb = judgeLife({ ...climbing, host: 'b' }, quickBounds, failover);
    assert.equal(rssClimb.leak, false, rssClimb.note);
    assert.equal(judgeLife({ ...climbing, host: 'b' }, bounds, failover).leak, true, 'judged in the full soak');
    const fdClimb = judgeLife({ ...series((t) => ({ rssMb: 150, fds: 40 + Math.floor(Math.max(0, t - 68_000) / 5000) })), host: 'b' }, quickBounds, failover);
    assert.equal(fdClimb.leak, true, `descriptors still judged: ${fdClimb.note}`);
    const unjudged = judgeLife(series((t) => ({ rssMb: 150 + t, fds: 40 })), bounds, [{ from: 50_000, to: 260_000 }]);
    assert.equal(unjudged.judged, false, 'no stretch long enough');
    assert.match(unjudged.note, /switch/);
  });

  // A major GC before every sample (heapAt = t) unless said otherwise.
  const withHeap = (rss: (t: number) => number, heap: (t: number) => number, gcAt: (t: number) => number = (t) => t): Series => {
    const s = series((t) => ({ rssMb: rss(t), fds: 40 }));
    return { ...s, samples: s.samples.map((x) => ({ ...x, heapMb: heap(gcAt(x.t)), heapAt: gcAt(x.t) })) };
  };

  it('does not judge the heap across role switches when no role is long enough to judge, as RSS', () => {
    const stepRss = (t: number): number => (t < 120_000 ? 150 : 230);
    // A standby's level, then a primary's: with no stretch long enough, the step would read as growth.
    const stepped = judgeLife(withHeap(stepRss, (t) => (t < 110_000 ? 45 : 87)), bounds, [{ from: 50_000, to: 260_000 }]);
    assert.equal(stepped.leak, false, stepped.note);
    assert.match(stepped.note, /heap not judged/);
    // A life without switches is one stretch: judged, flat or growing.
    const flat = judgeLife(withHeap(() => 150, (t) => 40 + ((t / 5000) % 4) * 6), bounds, []);
    assert.match(flat.note, /heap flat/, flat.note);
    const growing = judgeLife(withHeap(() => 150, (t) => 40 + t / 2000), bounds, []);
    assert.equal(growing.leak, true, growing.note);
  });

  it('judges the heap as major GCs leave it, each role by its own GCs', () => {
    const rss = (): number => 150;
    // Major GCs every 20 s leaving 50 MB: whatever heapUsed reads between them, the levels are flat.
    const every20s = (t: number): number => t - (t % 20_000);
    const flat = judgeLife(withHeap(rss, () => 50, every20s), bounds, []);
    assert.equal(flat.judged, true, flat.note);
    assert.equal(flat.leak, false, flat.note);
    // The levels themselves rising is a leak, however far apart the GCs.
    const rising = judgeLife(withHeap(rss, (t) => 50 + t / 2000, every20s), bounds, []);
    assert.equal(rising.leak, true, rising.note);
    // A role switch is a step of the heap (a primary holds more than a standby), not growth; growth within a role is.
    const step = judgeLife(withHeap(rss, (t) => (t < 120_000 ? 55 : 130), every20s), bounds, [{ from: 110_000, to: 140_000 }]);
    assert.equal(step.judged, true, step.note);
    assert.equal(step.leak, false, `a step at the switch: ${step.note}`);
    const withinRole = judgeLife(withHeap(rss, (t) => (t < 120_000 ? 55 : 130 + (t - 140_000) / 1000)), bounds, [{ from: 110_000, to: 140_000 }]);
    assert.equal(withinRole.leak, true, `growth within the new role: ${withinRole.note}`);
    const beforeDemotion = judgeLife(withHeap(rss, (t) => (t < 110_000 ? 60 + t / 1500 : 55)), bounds, [{ from: 110_000, to: 115_000 }]);
    assert.equal(beforeDemotion.leak, true, `growth up to a demotion, the standby's lower level right after: ${beforeDemotion.note}`);
    // No major GC for a minute after the switch: the level the old role left (50 MB) is not the new role's, which
    // its first GC (at 160 s) shows at 130 MB and keeps: flat, not a growth from 50 to 130.
    const lateGc = (t: number): number => (t < 160_000 ? Math.min(every20s(t), 100_000) : every20s(t));
    const noGcAfter = judgeLife(withHeap(rss, (g) => (g <= 100_000 ? 50 : 130), lateGc), bounds, [{ from: 100_000, to: 105_000 }]);
    assert.equal(noGcAfter.judged, true, noGcAfter.note);
    assert.match(noGcAfter.note, /heap flat \(130/);
    // One major GC in a life: a single level repeated is not judged flat, it is not judged.
    const oneGc = judgeLife(withHeap(rss, () => 80, () => 5_000), bounds, []);
    assert.match(oneGc.note, /heap not judged/, oneGc.note);
    assert.equal(noGcAfter.leak, false, noGcAfter.note);
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
