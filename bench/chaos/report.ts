// The chaos soak's Markdown report (the JSON is the SoakResult itself).
import type { ChaosPlan } from './plan.js';
import type { FailoverResult } from './failover.js';
import type { SoakResult } from './soak.js';

const s = (ms: number | null): string => (ms === null ? '—' : ms >= 10_000 ? `${(ms / 1000).toFixed(0)} s` : `${(ms / 1000).toFixed(1)} s`);

export function renderChaosReport(r: SoakResult, plan: ChaosPlan, machine: Record<string, string>): string {
  const out: string[] = [];
  const verdict = r.failures.length === 0 ? 'PASS' : `FAIL (${r.failures.length})`;
  out.push(`# twinlayer chaos soak — ${r.startedAt.slice(0, 10)} (${r.mode}, seed ${r.seed}): ${verdict}`, '');
  out.push(`Run took ${Math.round(r.totalS / 60)} min (${r.soakS} s of writes and faults) on ${machine['cpus'] ?? '?'}; kernel ${machine['kernel'] ?? '?'}; ${machine['dockerd'] ?? '?'}; Node ${machine['node'] ?? '?'}.`);
  out.push(`Two lab hosts in network namespaces, each with its own dockerd and \`twinlayer agent\`, keepalived on both (a MASTER); the embedded S3 server behind a fault proxy per host; the standby's Docker data root on a ${plan.standbyFsMb} MiB loop-mounted ext4. ${r.containers} protected containers (+ web) written to at random (${plan.writesPerSecond}/s target). Replay with \`npm run chaos -- ${r.mode === 'quick' ? '--quick ' : r.mode === 'full' ? '' : `--minutes=${r.mode.replace('min', '')} `}--seed=${r.seed}\`.`, '');
  out.push('| figure | value |', '|---|---|');
  out.push(`| kills survived (SIGKILL) | ${r.kills.survived} of ${r.kills.total} (pusher ${r.kills.byKind['kill-pusher']}, puller ${r.kills.byKind['kill-puller']}, primary engine ${r.kills.byKind['kill-engine-primary']}, standby engine ${r.kills.byKind['kill-engine-standby']}) |`);
  out.push(`| bucket outages | ${r.outage.count}, ${r.outage.seconds} s in all, longest ${r.outage.longestS} s |`);
  out.push(`| standby disk full | ${r.diskFull.count}, ${r.diskFull.seconds} s in all |`);
  const mid = r.failovers.filter((f) => f.kind !== 'final-kill');
  const kindsOf = (k: string): number => mid.filter((f) => f.kind === k).length;
  out.push(`| failovers during the soak | ${mid.length} (whole primary host SIGKILLed ${kindsOf('failover-kill')}, its keepalived stopped ${kindsOf('failover-keepalived')}), + 1 after it; details below |`);
  const net = (['reset', 'slowdown', 'truncate', 'stall', 'lose-answer', 'error500'] as const).map((k) => `${k} ${r.injected[k]}`).join(', ');
  out.push(`| fault-proxy faults (times injected) | ${net} |`);
  out.push(`| writes (docker exec) | ${r.writes.ok} ok, ${r.writes.failed} failed (engine down), ${r.writes.perSecond}/s |`);
  out.push(`| commits in the bucket | ${r.commits} in ${r.generations} generation(s) |`);
  out.push(`| divergences (docker export, twin vs primary; promoted vs primary) | ${r.divergences.length} |`);
  out.push(`| longest convergence after a fault | ${s(r.convergence.longestMs)} raw; ${s(r.convergence.longestAttributableMs)} not overlapped by other faults${r.convergence.longest ? ` (${r.convergence.longest.kind}: ${r.convergence.longest.detail})` : ''} |`);
  out.push(`| final convergence (last write → every twin staged) | ${s(r.finalConvergeMs)} |`);
  const fo = r.failovers;
  const sum = (f: (x: FailoverResult) => number): number => fo.reduce((a, x) => a + f(x), 0);
  out.push(`| commits before MASTER checked in the promoted containers | ${sum((x) => x.commitsBeforeMasterOldGeneration)} of the old generations over ${fo.length} failovers (${sum((x) => x.markersChecked)} marker files checked, ${sum((x) => x.newestCommitMarkers)} of them from the newest commit of each container; ${sum((x) => x.halfWritten)} booted empty, their writes lost as after a crash and kept in the divergent tail); ${sum((x) => x.notFinalized.length)} left out by a finalize that timed out |`);
  out.push(`| acknowledged writes on an old primary after what it shipped (divergent tails) | ${sum((x) => x.lostWrites)}, of which ${sum((x) => x.lostWritesAccounted)} found in ${sum((x) => x.tails)} divergent tail(s) |`);
  out.push(`| leaks | ${r.processes.filter((p) => p.leak).length} of ${r.processes.filter((p) => p.judged).length} process lives judged |`, '');

  out.push('## Failovers', '');
  out.push('The whole primary SIGKILLed (agent, keepalived, engine, containers; back later as after a reboot) or its keepalived stopped (the host runs on and demotes itself). "Before MASTER": the server answered the commit\'s PUT before the new primary\'s promotion started. Every such commit must be within what the new primary\'s claim finalized, and each promoted container must hold, file by file, the markers of its newest one and every acknowledged marker finalized; the acknowledged writes it lacks must be in the old primary\'s divergent tail. "Back as standby": until the old primary had staged, in every container, a head of the new generation read at most the plan\'s rejoin lag before (writes go on meanwhile); in brackets how old that head was. The last row is the kill after the soak.', '');
  out.push('| # | kind | at | from → to | generations | kill/stop → MASTER → booted | finalize | commits before MASTER (old generation) | markers checked | lost writes → in tails | back as standby (following behind by) |', '|---|---|---|---|---|---|---|---|---|---|---|');
  for (const f of fo) {
    out.push(`| ${f.n} | ${f.kind} | ${f.atS} s | ${f.from} → ${f.to} | ${f.generations[0]} → ${f.generations[1]} | ${s(f.triggerToMasterMs)} → ${s(f.triggerToBootedMs)} (${f.outcome ?? '?'}) | ${s(f.finalizeMs)}${f.finalizeTimedOut ? ' TIMED OUT' : ''} | ${f.commitsBeforeMaster} (${f.commitsBeforeMasterOldGeneration}) | ${f.markersChecked} | ${f.lostWrites} → ${f.lostWritesAccounted} in ${f.tails} tail(s) | ${s(f.rejoinMs)}${f.rejoinLagMs === null ? '' : ` (${s(f.rejoinLagMs)})`} |`);
  }
  for (const f of fo) {
    if (f.finalizeTimeout) out.push('', `Failover ${f.n}: the finalize hit its deadline; behind: ${f.finalizeTimeout.containers.join('; ') || 'none'}; faults in the minute before: ${f.finalizeTimeout.faults.join('; ') || 'none'}.`);
  }
  out.push('');

  out.push('## Convergence after each kind of fault', '');
  out.push('A probe is written on the primary when a fault ends; the time is until the standby staged it. "Attributable" leaves out the time other faults (kills, outages, a full disk) overlapped.', '');
  out.push('| fault | probes | longest | longest attributable |', '|---|---|---|---|');
  for (const [kind, k] of Object.entries(r.convergence.byKind).sort()) out.push(`| ${kind} | ${k.n} | ${s(k.maxMs)} | ${s(k.maxAttributableMs)} |`);
  out.push('');

  out.push('## Memory and descriptors of each twinlayer process', '');
  out.push(`Each life of an agent (a SIGKILL starts a new one) is sampled every ${plan.sampleMs / 1000} s. Leak criterion, after a warm-up of ${plan.leak.warmUpMs / 1000} s and over at least ${plan.leak.minWindowMs / 1000} s: the least-squares line of RSS less the garbage not yet collected (heap in use and external memory above the level the last major GC left, from the agent's status at each sample; raw RSS where the status did not cover the window: a busy agent's garbage between two major GCs climbs for a minute and is freed at the next, and what the program keeps of it is judged by the heap level the GCs leave, below) grows by more than ${plan.leak.rssGrowthMb} MB and by more than ${plan.leak.rssGrowthFraction * 100} % of the window's first-quarter median, or that of the open descriptors by more than ${plan.leak.fdGrowth} with the last quarter never back down to the first quarter's maximum. RSS growth is judged within one role: each stretch of a life between failovers (from a failover's start until that host reached its new role: the new primary's promotion over, the old primary back as the standby) is judged on its own, after its own warm-up, because what the allocator keeps of a role switch's peak is a step in RSS, not a growth (\`npm run bench:role-memory\`: the V8 heap level over switch after switch while RSS steps up and then stays level). The last ${Math.round(plan.agentKillFreeTailMs / 1000)} s of the soak kill no agent and the last ${Math.round(plan.failoverRoomMs / 1000)} s start no failover, and the writes go on after the soak until the primary has been in its role a warm-up and a window long (a failover waits for kills, outages and a full disk to end, and may come late), so a life is always judged. In the quick soak a stretch that begins at a role switch is judged by its heap level and descriptors, not its RSS (a new role's RSS climbs for minutes, what the allocator keeps of its bursts); the full soak judges RSS there too. The heap (V8's heap in use plus external memory, from each agent's status: what the program itself holds) is judged by the same criterion as each major GC of the agent left it (between two of them heapUsed counts garbage not yet collected), each stretch by the GCs within it, within each role as RSS (a primary holds more than a standby); a life with no role long enough to judge is not judged (across a switch the step between roles reads as growth).`, '');
  out.push('| process | samples | judged window | RSS first → last (fit growth) | heap fit growth | fds first → last, max (fit growth) | verdict |', '|---|---|---|---|---|---|---|');
  for (const v of r.processes) {
    const n = r.series.find((x) => x.name === v.name)?.samples.length ?? 0;
    if (!v.judged && n < 3) continue;
    out.push(`| ${v.name} | ${n} | ${v.judged ? `${Math.round(v.windowMs / 1000)} s` : '—'} | ${v.judged && v.rssFirstMb > 0 ? `${v.rssFirstMb} → ${v.rssLastMb} MB (${v.rssFitGrowthMb >= 0 ? '+' : ''}${v.rssFitGrowthMb}${v.lessGarbage ? ' less garbage' : ''})` : '—'} | ${v.heapFitGrowthMb === null ? '—' : `${v.heapFitGrowthMb >= 0 ? '+' : ''}${v.heapFitGrowthMb} MB`} | ${v.judged ? `${v.fdsFirst} → ${v.fdsLast}, ${v.fdsMax} (${v.fdFitGrowth >= 0 ? '+' : ''}${v.fdFitGrowth})` : `max ${v.fdsMax}`} | ${v.leak ? `**LEAK**: ${v.note}` : v.note} |`);
  }
  out.push('');
  const longLives = r.series.filter((x) => r.processes.find((v) => v.name === x.name)?.judged === true);
  if (longLives.length > 0) {
    out.push('RSS (MB) / RSS less the garbage not yet collected (MB) / heap after the last major GC (MB) / descriptors over time of the judged lives (one column a tenth of the life):', '');
    for (const x of longLives) {
      const step = Math.max(1, Math.floor(x.samples.length / 10));
      const pts = x.samples.filter((_, i) => i % step === 0).map((p) => `${Math.round(p.t / 1000)} s: ${Math.round(p.rssMb)}/${p.rssLessGarbageMb === undefined ? '?' : Math.round(p.rssLessGarbageMb)}/${p.heapMb === undefined ? '?' : Math.round(p.heapMb)}/${p.fds}`);
      out.push(`- ${x.name}: ${pts.join(', ')}`);
    }
    out.push('');
  }
  out.push('## Error lines of the agents', '', 'Expected under faults (a Docker engine down, the bucket out); counted by message.', '');
  const errs = Object.entries(r.agentErrors).sort((x, y) => y[1] - x[1]);
  if (errs.length === 0) out.push('None.');
  for (const [msg, n] of errs) out.push(`- ${n} × ${msg}`);
  out.push('');
  out.push('## Failures', '');
  if (r.failures.length === 0) out.push('None.');
  for (const f of r.failures) out.push(`- ${f.split('\n').join('\n  ')}`);
  out.push('');
  return out.join('\n');
}
