// `twinlayer restore --image` on the 206 MB benchmark image (bench/lib/cluster.ts makeServiceImage: busybox and an
// incompressible payload): a container of it on engine A writes a small file (then, second case, 50 MB more), the
// real `twinlayer push` publishes it into the embedded S3 server, and `twinlayer restore web --image` runs `--runs`
// times into A (each run moves the tag: --force). Measured: the CLI's wall time (process start to exit, node start
// included) and the time its `image loaded` line reports (the bucket read, the restore, docker save of the base image,
// the layer, docker load). Prints a table and writes bench/results/<date>-restore-image.json.
//   node --import tsx bench/restore-image.ts [--runs=3] [--kind=overlay2|containerd]      (root: dockerd engines)
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { dockerCli, type EngineKind } from '../src/lab/engine.js';
import { waitFor } from '../src/lab/wait.js';
import { pusherCaughtUp, readPusherStatus } from '../test/support/pusher-status.js';
import { freePort, spawnTwinlayer } from '../test/support/twinlayer.js';
import { intOption, option, resultsDir, withCluster } from './lib/bench-cluster.js';
import { imageSize, imageTag, makeServiceImage, spawnPusher, twinlayerEnv, type Cluster, type GroupOptions } from './lib/cluster.js';
import { summarize, type Summary } from './lib/stats.js';

const RUNS = intOption('runs', 3, 20);
const KIND = (option('kind') ?? 'overlay2') as EngineKind;
const MB = 206;
const log = (line: string): void => void process.stderr.write(`${line}\n`);

interface Case {
  case: string;
  wallMs: Summary;
  reportedMs: Summary;
  layerBytes: number;
  /** Medians of the phases the restore's log reports: the restore from the bucket, docker save of the base image, the
   *  layer written, docker load. */
  phasesMs: Record<string, number>;
}

async function lastSeq(stateDir: string, group: string): Promise<number> {
  return (await readPusherStatus(stateDir, group))?.containers.find((x) => x.name === 'web')?.lastSeq ?? 0;
}

/** Waits until the pusher published web up to at least `minSeq` and holds nothing more of it. */
async function publishedFrom(stateDir: string, group: string, minSeq: number): Promise<void> {
  await waitFor(`the pusher published web past seq ${minSeq - 1}`, 120_000, async () => {
    const web = (await readPusherStatus(stateDir, group))?.containers.find((x) => x.name === 'web');
    return web !== undefined && web.lastSeq >= minSeq && (await pusherCaughtUp(stateDir, group, 'web', web.lastSeq)) ? true : undefined;
  }, 200);
}

async function measure(c: Cluster, o: GroupOptions, label: string, restoreTmp: string): Promise<Case> {
  const wall: number[] = [];
  const reported: number[] = [];
  const phases: Record<string, number[]> = {};
  let layerBytes = 0;
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    const p = spawnTwinlayer(['restore', 'web', '--image', 'tl-restored:bench', '--force'], { ...twinlayerEnv(c, 'a', o), TMPDIR: restoreTmp });
    c.procs.add(p);
    const code = await p.exited;
    c.procs.delete(p);
    wall.push(Math.round(performance.now() - t0));
    const line = p.lines.find((l) => l.includes('"msg":"image loaded"'));
    if (code !== 0 || line === undefined) throw new Error(`restore exited ${code}:\n${p.lines.slice(-10).join('\n')}`);
    const parsed = JSON.parse(line) as { ms: number; layerBytes: number; phasesMs: Record<string, number> };
    reported.push(parsed.ms);
    for (const [k, v] of Object.entries(parsed.phasesMs)) (phases[k] ??= []).push(v);
    layerBytes = parsed.layerBytes;
    log(`  ${label} run ${i + 1}: wall ${wall.at(-1)} ms, reported ${parsed.ms} ms, layer ${(parsed.layerBytes / 1e6).toFixed(1)} MB`);
  }
  return { case: label, wallMs: summarize(wall), reportedMs: summarize(reported), layerBytes, phasesMs: Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, summarize(v).median])) };
}

await withCluster({ prefix: 'twl-rimg-bench-', log, engineLog: log, kind: KIND }, async (c) => {
  await makeServiceImage(c, MB);
  const size = await imageSize(c, MB);
  log(`image ${imageTag(MB)} ready (${(size / 1e6).toFixed(1)} MB)`);
  const o: GroupOptions = { group: 'rimg', label: 'twinlayer.enable', pollIntervalMs: 50, hookPort: await freePort(), logLevel: 'info' };
  await dockerCli(c.a, ['run', '-d', '--name', 'web', '--label', 'twinlayer.enable=true', '--network', 'none', imageTag(MB), 'sh', '-c', 'while true; do sleep 1; done']);
  spawnPusher(c, o);
  const stateDir = join(c.base, `state-${o.group}-a`);
  const restoreTmp = join(c.base, 'restore-tmp');
  await mkdir(restoreTmp);
  const cases: Case[] = [];
  let before = await lastSeq(stateDir, o.group);
  await dockerCli(c.a, ['exec', 'web', 'sh', '-c', 'dd if=/dev/urandom of=/srv-4k bs=4096 count=1 2>/dev/null']);
  await publishedFrom(stateDir, o.group, before + 1);
  cases.push(await measure(c, o, '4 KiB written', restoreTmp));
  before = await lastSeq(stateDir, o.group);
  await dockerCli(c.a, ['exec', 'web', 'sh', '-c', 'dd if=/dev/urandom of=/srv-50m bs=1048576 count=50 2>/dev/null']);
  await publishedFrom(stateDir, o.group, before + 1);
  cases.push(await measure(c, o, '4 KiB + 50 MB written', restoreTmp));

  const p = (x: Case): string => ['restore', 'save', 'layer', 'load'].map((k) => x.phasesMs[k] ?? '?').join(' / ');
  const rows = cases.map((x) => `| ${x.case} | ${(x.layerBytes / 1e6).toFixed(1)} MB | ${x.reportedMs.median} ms (${x.reportedMs.min}-${x.reportedMs.max}) | ${p(x)} ms | ${x.wallMs.median} ms (${x.wallMs.min}-${x.wallMs.max}) |`);
  process.stdout.write([
    `restore --image, ${imageTag(MB)} (${(size / 1e6).toFixed(1)} MB), ${KIND}, ${RUNS} runs each, medians (min-max)`,
    '',
    '| container wrote | restored layer | restore to image loaded (its log) | restore / save / layer / load | CLI wall time |',
    '|---|---|---|---|---|',
    ...rows,
    '',
  ].join('\n'));
  const out = join(resultsDir, `${new Date().toISOString().slice(0, 10)}-restore-image${KIND === 'overlay2' ? '' : `-${KIND}`}.json`);
  await writeFile(out, `${JSON.stringify({ when: new Date().toISOString(), kind: KIND, imageBytes: size, runs: RUNS, cases }, null, 2)}\n`);
  log(`wrote ${out}`);
});
