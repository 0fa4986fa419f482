// Kill-to-first-good-response in the two-host lab (real keepalived, real engines, twinlayer push/pull), median of
// N runs (default 5). Prints a table and writes bench/results/<date>-failover.json.
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

const rows: Array<{ run: number; killToMasterMs: number; killToTwinStartedMs: number; killToFirstGoodMs: number; ok: boolean }> = [];
for (let run = 1; run <= runs; run++) {
  const r = await runFailover({ versions: 3 });
  rows.push({ run, killToMasterMs: r.killToMasterMs, killToTwinStartedMs: r.killToTwinStartedMs, killToFirstGoodMs: r.killToFirstGoodMs, ok: r.served === r.lastInBucket });
  process.stdout.write(`run ${run}: kill -> MASTER ${r.killToMasterMs} ms, -> twin started ${r.killToTwinStartedMs} ms, -> first good response ${r.killToFirstGoodMs} ms, served last version: ${r.served === r.lastInBucket}\n`);
}
const summary = {
  runs,
  medianKillToMasterMs: median(rows.map((r) => r.killToMasterMs)),
  medianKillToTwinStartedMs: median(rows.map((r) => r.killToTwinStartedMs)),
  medianKillToFirstGoodMs: median(rows.map((r) => r.killToFirstGoodMs)),
  allServedLastVersion: rows.every((r) => r.ok),
};
process.stdout.write(`\n| metric (median of ${runs}) | ms |\n|---|---|\n| kill -> standby MASTER | ${summary.medianKillToMasterMs} |\n| kill -> twin started | ${summary.medianKillToTwinStartedMs} |\n| kill -> first good response | ${summary.medianKillToFirstGoodMs} |\n`);
const dir = join(dirname(fileURLToPath(import.meta.url)), 'results');
await mkdir(dir, { recursive: true });
const file = join(dir, `${new Date().toISOString().slice(0, 10)}-failover.json`);
await writeFile(file, JSON.stringify({ when: new Date().toISOString(), summary, rows }, null, 2) + '\n');
process.stdout.write(`wrote ${file}\n`);
process.exitCode = summary.allServedLastVersion ? 0 : 1;
