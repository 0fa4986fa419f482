// What checking each twin's bind sources right before its start costs a promotion (puller.startTwins' start check:
// one inspect and a realpath per source, run in each twin's start slot). N stopped twins, each with two bind mounts,
// started with DockerRuntime.startContainers (concurrency 8) without and with the check, runs interleaved; the twins
// are stopped (docker stop -t 0) between runs. Also the check alone for all N (sequential).
// Usage: node --import tsx bench/start-check.ts [--twins=N] [--runs=N]   (root)
// Prints a table and writes bench/results/<date>-start-check.json.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { DEFAULT_TWIN_POLICY, DockerRuntime, twinSpecSchema } from '../src/docker/index.js';
import { importBusyboxImage } from '../src/lab/busybox-image.js';
import { startEngine, stopAllEngines } from '../src/lab/engine.js';
import { summarize, type Summary } from './lib/stats.js';

const here = dirname(fileURLToPath(import.meta.url));
const CONCURRENCY = 8;

function args(): { twins: number; runs: number } {
  let twins = 16;
  let runs = 7;
  for (const a of process.argv.slice(2)) {
    const [k, v] = a.split('=');
    if (k === '--twins') twins = Number(v);
    else if (k === '--runs') runs = Number(v);
    else throw new Error(`unknown argument ${a}; usage: --twins=N --runs=N`);
  }
  if (!Number.isInteger(twins) || twins < 1 || twins > 64 || !Number.isInteger(runs) || runs < 1 || runs > 50) throw new Error('--twins 1-64, --runs 1-50');
  return { twins, runs };
}

async function main(): Promise<void> {
  const { twins, runs } = args();
  const dir = await mkdtemp(join(tmpdir(), 'twl-startcheck-'));
  const engine = await startEngine({ name: 'bench-startcheck' });
  try {
    const runtime = new DockerRuntime({ socketPath: engine.socketPath, mountInfoPath: engine.mountInfoPath });
    const imageId = await importBusyboxImage(engine.socketPath, 'tl-busybox:startcheck');
    const roots = join(dir, 'binds');
    const policy = { ...DEFAULT_TWIN_POLICY, allowedBindRoots: [roots] };
    const names: string[] = [];
    for (let i = 0; i < twins; i++) {
      const name = `sc-${i}`;
      await mkdir(join(roots, name, 'data'), { recursive: true });
      await mkdir(join(roots, name, 'conf'), { recursive: true });
      const spec = twinSpecSchema.parse({
        version: 1, name, image: 'tl-busybox:startcheck', imageId, cmd: ['sleep', '3600'], entrypoint: null, env: [], labels: {},
        workingDir: '', user: '', exposedPorts: [], portBindings: {}, networkMode: 'none', capturedAt: new Date().toISOString(),
        hostConfig: { Binds: [`${roots}/${name}/data:/data`], Mounts: [{ Type: 'bind', Source: `${roots}/${name}/conf`, Target: '/conf', ReadOnly: true }] },
      });
      await runtime.ensureTwin(spec, { trusted: true, policy });
      names.push(name);
    }
    const check = async (name: string): Promise<string | null> => {
      const problems = await runtime.bindSourceProblemsOf(name, policy);
      return problems.length === 0 ? null : problems.join('; ');
    };
    const samples: Record<'without' | 'with' | 'checkAlone', number[]> = { without: [], with: [], checkAlone: [] };
    const startAll = async (withCheck: boolean): Promise<number> => {
      const t0 = performance.now();
      const results = await runtime.startContainers(names, CONCURRENCY, withCheck ? check : undefined);
      const ms = performance.now() - t0;
      const failed = results.filter((r) => !r.ok);
      if (failed.length > 0) throw new Error(`start failed: ${JSON.stringify(failed)}`);
      await Promise.all(names.map((n) => runtime.stopContainer(n, 0)));
      return ms;
    };
    await startAll(false); // warm-up, not counted
    for (let r = 0; r < runs; r++) {
      // Interleaved, the order alternating, so that the engine's mood affects both alike.
      for (const mode of r % 2 === 0 ? [false, true] : [true, false]) samples[mode ? 'with' : 'without'].push(await startAll(mode));
      const t0 = performance.now();
      for (const n of names) if ((await check(n)) !== null) throw new Error(`${n}: check failed`);
      samples.checkAlone.push(performance.now() - t0);
    }
    const summaries = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, summarize(v)])) as Record<keyof typeof samples, Summary>;
    const rows: Array<[string, Summary]> = [
      [`start ${twins} twins, no check (ms)`, summaries.without],
      [`start ${twins} twins, with the bind check (ms)`, summaries.with],
      [`the check alone, ${twins} twins one after another (ms)`, summaries.checkAlone],
    ];
    process.stdout.write(`| what | median | min | max |\n|---|---|---|---|\n${rows.map(([w, s]) => `| ${w} | ${s.median} | ${s.min} | ${s.max} |`).join('\n')}\n`);
    const date = new Date().toISOString();
    const resultsDir = join(here, 'results');
    await mkdir(resultsDir, { recursive: true });
    const file = join(resultsDir, `${date.slice(0, 10)}-start-check.json`);
    await writeFile(file, JSON.stringify({ date, twins, runs, concurrency: CONCURRENCY, bindsPerTwin: 2, summaries, samples }, null, 2) + '\n');
    process.stdout.write(`written ${file}\n`);
    await runtime.removeAllContainers();
  } finally {
    await engine.stop();
    await stopAllEngines();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
