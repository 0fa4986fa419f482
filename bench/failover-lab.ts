// The failover-and-failback scenario of `twinlayer demo` N times (default 5) in the two-host lab: `twinlayer agent`
// and real keepalived on both hosts, real engines, the embedded S3 server. Per run: kill → first good response on the
// VIP for each direction (a→b, then b→a after a rejoined), MASTER → first full checkpoint of every promoted
// container in the bucket, and agent start on the returning host → standby converged. Prints a table (median,
// min, max) and writes bench/results/<date>-failover.json.
//   node --import tsx bench/failover-lab.ts [--runs 5]
import { mkdir, writeFile } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runFailover } from '../src/lab/failover.js';

const runsArg = process.argv.indexOf('--runs');
const runs = runsArg === -1 ? 5 : Number(process.argv[runsArg + 1]);
if (!Number.isInteger(runs) || runs < 1 || runs > 50) throw new Error(`--runs: expected 1-50, got ${process.argv[runsArg + 1]}`);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const metrics = {
  'a→b: kill → first good response on the VIP': [] as number[],
  'b→a: kill → first good response on the VIP': [] as number[],
  'a→b: kill → MASTER (notify.sh stamp)': [] as number[],
  'b→a: kill → MASTER (notify.sh stamp)': [] as number[],
  'a→b: kill → twins started': [] as number[],
  'b→a: kill → twins started': [] as number[],
  'a→b: MASTER → first full checkpoint in the bucket': [] as number[],
  'b→a: MASTER → first full checkpoint in the bucket': [] as number[],
  'returning host: agent spawned → stale container stopped': [] as number[],
  'returning host: agent\'s first log line → stale container stopped': [] as number[],
  'returning host: agent spawned → standby converged': [] as number[],
  'returning host: agent\'s first log line → standby converged': [] as number[],
};
type Metric = keyof typeof metrics;
const rows: unknown[] = [];
let allOk = true;
for (let run = 1; run <= runs; run++) {
  const r = await runFailover({ versions: 3 });
  const ok = r.failover.served === r.failover.lastInBucket && r.failback.served === r.failback.lastInBucket && r.rejoin.vipStayed;
  allOk &&= ok;
  const values: Record<Metric, number> = {
    'a→b: kill → first good response on the VIP': r.failover.killToFirstGoodMs,
    'b→a: kill → first good response on the VIP': r.failback.killToFirstGoodMs,
    'a→b: kill → MASTER (notify.sh stamp)': r.failover.killToMasterMs,
    'b→a: kill → MASTER (notify.sh stamp)': r.failback.killToMasterMs,
    'a→b: kill → twins started': r.failover.killToTwinStartedMs,
    'b→a: kill → twins started': r.failback.killToTwinStartedMs,
    'a→b: MASTER → first full checkpoint in the bucket': r.failover.masterToFullCheckpointMs,
    'b→a: MASTER → first full checkpoint in the bucket': r.failback.masterToFullCheckpointMs,
    'returning host: agent spawned → stale container stopped': r.rejoin.agentSpawnToStaleStoppedMs,
    'returning host: agent\'s first log line → stale container stopped': r.rejoin.agentStartToStaleStoppedMs,
    'returning host: agent spawned → standby converged': r.rejoin.agentStartToConvergedMs,
    'returning host: agent\'s first log line → standby converged': r.rejoin.agentFirstLineToConvergedMs,
  };
  for (const [k, v] of Object.entries(values) as [Metric, number][]) metrics[k].push(v);
  rows.push({ run, ok, failover: r.failover, rejoin: r.rejoin, failback: r.failback });
  process.stdout.write(`run ${run}: a→b first good ${r.failover.killToFirstGoodMs} ms, b→a first good ${r.failback.killToFirstGoodMs} ms, `
    + `MASTER → full checkpoint ${r.failover.masterToFullCheckpointMs} / ${r.failback.masterToFullCheckpointMs} ms, `
    + `rejoin converged ${r.rejoin.agentStartToConvergedMs} ms, served the last version both times: ${ok}\n`);
}
const summary = Object.fromEntries(Object.entries(metrics).map(([k, xs]) => [k, { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) }]));
process.stdout.write(`\n| metric (${runs} runs) | median ms | min | max |\n|---|---|---|---|\n`);
for (const [k, v] of Object.entries(summary)) process.stdout.write(`| ${k} | ${v.median} | ${v.min} | ${v.max} |\n`);
const dir = join(dirname(fileURLToPath(import.meta.url)), 'results');
await mkdir(dir, { recursive: true });
const file = join(dir, `${new Date().toISOString().slice(0, 10)}-failover.json`);
await writeFile(file, JSON.stringify({ when: new Date().toISOString(), runs, allServedLastVersion: allOk, summary, rows }, null, 2) + '\n');
process.stdout.write(`wrote ${file}\n`);
process.exitCode = allOk ? 0 : 1;
