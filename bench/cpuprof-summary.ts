// `node --import tsx bench/cpuprof-summary.ts FILE.cpuprofile [--from=S] [--to=S] [--by=function|url|stack] [--top=N]
// [--timeline=S]`: where a V8 CPU profile (node --cpu-prof, bench/scale.ts --cpu-prof) spent its time. Self time by
// function (or by script, or by the first frame of twinlayer's own code on the stack), between --from and --to
// seconds after the profile's start; --timeline=S prints the busy milliseconds of each S-second slice first, to find
// the quiet window to look at. "(idle)" is the thread waiting, not CPU.
import { readFileSync } from 'node:fs';

interface CallFrame { functionName: string; url: string; lineNumber: number }
interface ProfileNode { id: number; callFrame: CallFrame; children?: number[] }
interface CpuProfile { nodes: ProfileNode[]; startTime: number; endTime: number; samples: number[]; timeDeltas: number[] }

const args = process.argv.slice(2);
const file = args.find((a) => !a.startsWith('--'));
const opt = (name: string): string | undefined => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
if (file === undefined) throw new Error('usage: cpuprof-summary.ts FILE.cpuprofile [--from=S] [--to=S] [--by=function|url|stack] [--top=N] [--timeline=S]');
const by = opt('by') ?? 'function';
if (!['function', 'url', 'stack'].includes(by)) throw new Error(`--by: function, url or stack, got ${by}`);
const top = Number(opt('top') ?? 40);

const prof = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
const nodes = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

const short = (url: string): string => url.replace(/^file:\/\//, '').replace(/^.*\/node_modules\//, 'nm:').replace(/^.*\/(dist|src)\//, '$1:');
const label = (f: CallFrame): string => `${f.functionName || '(anonymous)'} ${short(f.url)}:${f.lineNumber + 1}`;
const own = (f: CallFrame): boolean => /\/(dist|src)\//.test(f.url) && !f.url.includes('node_modules');

/** The key a sample's time goes to. */
function keyOf(id: number): string {
  const n = nodes.get(id);
  if (n === undefined) return '?';
  if (by === 'function') return label(n.callFrame);
  if (by === 'url') return short(n.callFrame.url) || n.callFrame.functionName;
  // stack: the innermost frame of our own code, with the self frame beside it.
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const f = nodes.get(cur)?.callFrame;
    if (f !== undefined && own(f)) return `${label(f)}  <- self ${n.callFrame.functionName || '(anonymous)'}`;
  }
  return `(no own frame) ${label(n.callFrame)}`;
}

const from = Number(opt('from') ?? 0) * 1e6;
const to = opt('to') === undefined ? Number.POSITIVE_INFINITY : Number(opt('to')) * 1e6;
const slice = opt('timeline') === undefined ? 0 : Number(opt('timeline')) * 1e6;
const totals = new Map<string, number>();
const slices = new Map<number, number>();
let t = 0;
let busy = 0;
for (let i = 0; i < prof.samples.length; i++) {
  const dt = prof.timeDeltas[i] ?? 0;
  t += dt;
  const id = prof.samples[i]!;
  const idle = nodes.get(id)?.callFrame.functionName === '(idle)';
  if (slice > 0 && !idle) slices.set(Math.floor(t / slice), (slices.get(Math.floor(t / slice)) ?? 0) + dt);
  if (t < from || t > to) continue;
  // A sample's time is the delta to the next one; the delta before it is close enough for a summary.
  const k = keyOf(id);
  totals.set(k, (totals.get(k) ?? 0) + dt);
  if (!idle) busy += dt;
}
const span = (Math.min(t, to) - from) / 1e6;
if (slice > 0) {
  const last = Math.floor(t / slice);
  process.stdout.write(`busy ms per ${slice / 1e6} s slice:\n`);
  for (let s = 0; s <= last; s++) process.stdout.write(`${String(Math.round((s * slice) / 1e6)).padStart(6)} s ${String(Math.round((slices.get(s) ?? 0) / 1000)).padStart(7)}\n`);
}
process.stdout.write(`window ${from / 1e6}–${Math.round(Math.min(t, to) / 1e6)} s (${span.toFixed(1)} s): busy ${(busy / 1000).toFixed(0)} ms = ${((busy / 1e4) / span).toFixed(2)} % of a core\n`);
const rows = [...totals.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
for (const [k, us] of rows) process.stdout.write(`${(us / 1000).toFixed(1).padStart(9)} ms ${((us / 1e4) / span).toFixed(3).padStart(7)} %  ${k}\n`);
