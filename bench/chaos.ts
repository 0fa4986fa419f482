// `npm run chaos` (the full soak, under 60 min), `npm run chaos -- --quick` (under 5 min, in CI on every
// submission), `--minutes=N` (the full mix, shorter), `--seed=N` (replay a schedule), `--results-dir=DIR`,
// `--agent-log=FILE` (every line the agents print, for explaining a slow rejoin afterwards).
// Writes <date>-chaos[-<mode>].json and .md into bench/results (or DIR); exits 1 on any divergence, leak,
// convergence timeout or harness failure, naming the container and the difference.
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { fullPlan, quickPlan, type ChaosPlan } from './chaos/plan.js';
import { randomSeed } from './chaos/prng.js';
import { renderChaosReport } from './chaos/report.js';
import { runSoak } from './chaos/soak.js';

const execFileP = promisify(execFile);

// The AWS SDK warns once per process under Node 20 that its 2027 releases need Node 22 (bin/twinlayer.js does the same).
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = ((warning: string | Error, ...rest: unknown[]): void => {
  const text = typeof warning === 'string' ? warning : warning.message;
  if (/NodeVersionSupportWarning|require node >=22/.test(text)) return;
  (emitWarning as (w: string | Error, ...r: unknown[]) => void)(warning, ...rest);
});

function parseArgs(argv: string[]): { plan: ChaosPlan; seed: number; resultsDir: string; agentLog: string | undefined } {
  let quick = false;
  let minutes: number | undefined;
  let seed: number | undefined;
  let resultsDir = join(dirname(fileURLToPath(import.meta.url)), 'results');
  let agentLog: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    const [key, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new Error(`${key} needs a value`);
      return v;
    };
    if (key === '--quick') quick = true;
    else if (key === '--seed') {
      const v = value();
      if (!/^\d+$/.test(v) || Number(v) > 0xffffffff) throw new Error(`--seed: expected an integer within 0..4294967295, got ${JSON.stringify(v)}`);
      seed = Number(v);
    } else if (key === '--minutes') minutes = Number(value());
    else if (key === '--results-dir') resultsDir = value();
    else if (key === '--agent-log') agentLog = value();
    else throw new Error(`unknown argument ${a}; expected --quick, --minutes=N, --seed=N, --results-dir=DIR, --agent-log=FILE`);
  }
  if (quick && minutes !== undefined) throw new Error('--quick and --minutes exclude each other');
  return { plan: quick ? quickPlan() : fullPlan(minutes), seed: seed ?? randomSeed(), resultsDir, agentLog };
}

async function machine(): Promise<Record<string, string>> {
  const run = async (cmd: string, args: string[]): Promise<string> => (await execFileP(cmd, args).catch(() => ({ stdout: '?' }))).stdout.trim();
  return { cpus: `${cpus().length} x ${cpus()[0]?.model ?? '?'}`, kernel: await run('uname', ['-r']), dockerd: await run('dockerd', ['--version']), node: process.version };
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) throw new Error('chaos: run as root (dockerd, network namespaces, loop mounts)');
  const { plan, seed, resultsDir, agentLog } = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const log = (line: string): void => {
    process.stdout.write(`[${String(Math.round((Date.now() - started) / 1000)).padStart(4)} s] ${line}\n`);
  };
  log(`seed ${seed} (replay: npm run chaos -- ${plan.mode === 'quick' ? '--quick ' : plan.mode === 'full' ? '' : `--minutes=${plan.mode.replace('min', '')} `}--seed=${seed})`);
  const result = await runSoak({ plan, seed, log, ...(agentLog === undefined ? {} : { agentLog }) });
  const m = await machine();
  await mkdir(resultsDir, { recursive: true });
  const stem = `${result.startedAt.slice(0, 10)}-chaos${plan.mode === 'full' ? '' : `-${plan.mode}`}`;
  await writeFile(join(resultsDir, `${stem}.json`), JSON.stringify({ machine: m, plan, ...result }, null, 2) + '\n');
  const md = renderChaosReport(result, plan, m);
  await writeFile(join(resultsDir, `${stem}.md`), md);
  process.stdout.write(`\n${md}\n`);
  log(`report: ${join(resultsDir, `${stem}.md`)} and .json`);
  if (result.failures.length > 0) {
    process.stderr.write(`chaos: FAILED (seed ${seed}):\n${result.failures.map((f) => `- ${f}`).join('\n')}\n`);
    return 1;
  }
  log(`chaos: passed — ${result.kills.survived} kills survived, ${result.outage.seconds} s of outage, ${result.commits} commits, 0 divergences, longest convergence after a fault ${Math.round(result.convergence.longestAttributableMs / 100) / 10} s`);
  return 0;
}

main().then((code) => process.exit(code), (err: unknown) => {
  process.stderr.write(`chaos: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(2);
});
