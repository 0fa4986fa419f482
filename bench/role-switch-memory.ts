// `npm run bench:role-memory [-- --switches=N --containers=N]`: does an agent's memory come back after a role
// switch? The two-host lab (src/lab) with `twinlayer agent` on both hosts and keepalived; N protected containers
// with a few MB each; then keepalived is stopped on the primary and started again, again and again (no other
// fault), and after each switch has settled (the old primary converged as the standby) each agent's RSS and its
// V8 heap (the status endpoint's memory) are sampled. A leak per switch grows the heap at every row; memory the
// process keeps after a peak (V8's heap, malloc arenas) shows as a step in RSS that does not repeat.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentLab } from '../src/lab/agent-lab.js';
import { importBusyboxImage, copyImage } from '../src/lab/busybox-image.js';
import { dockerCli } from '../src/lab/engine.js';
import { waitFor } from '../src/lab/wait.js';
import { sampleProcess } from './chaos/leak.js';

const arg = (name: string, dflt: number): number => {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  const n = a === undefined ? dflt : Number(a.slice(name.length + 3));
  if (!Number.isInteger(n) || n < 1 || n > 100) throw new RangeError(`--${name}: an integer 1..100, got ${a}`);
  return n;
};
const switches = arg('switches', 8);
const containers = arg('containers', 16);
const IMAGE = 'tl-rolemem:lab';

interface Row { switch: number; primary: string; promotedMs: number; rssMb: Record<string, number>; heapMb: Record<string, number | null> }

async function main(): Promise<void> {
  const t0 = Date.now();
  const log = (m: string): void => { process.stderr.write(`[${String(Math.round((Date.now() - t0) / 1000)).padStart(4)} s] ${m}\n`); };
  const l = await AgentLab.create({ waitMs: 120_000 });
  const rows: Row[] = [];
  try {
    const [a, b] = l.hosts;
    await importBusyboxImage(l.engine(a).socketPath, IMAGE);
    await copyImage(l.engine(a).socketPath, l.engine(b).socketPath, IMAGE);
    for (let i = 0; i < containers; i++) {
      // A few MB per container (random, so nothing compresses): the full checkpoints of a promotion carry them.
      await dockerCli(l.engine(a), ['run', '-d', '--name', `m${i}`, '--label', 'twinlayer.enable=true', '--network', 'none', IMAGE,
        'sh', '-c', "trap 'exit 0' TERM; mkdir -p /data; head -c 3000000 /dev/urandom > /data/blob; while true; do sleep 1; done"]);
    }
    await l.startAgent(a);
    await l.startAgent(b);
    await l.startKeepalived();
    let primary = a;
    await waitFor('b converged as the standby', 180_000, () => l.converged(b), 500);
    const sample = async (): Promise<Pick<Row, 'rssMb' | 'heapMb'>> => {
      const rssMb: Record<string, number> = {};
      const heapMb: Record<string, number | null> = {};
      for (const h of l.hosts) {
        const pid = l.agent(h)?.proc.pid;
        const s = pid === undefined ? null : await sampleProcess(pid, 0);
        rssMb[h] = s?.rssMb ?? NaN;
        const st = await l.status(h);
        heapMb[h] = st?.memory?.heapUsedMb ?? null;
      }
      return { rssMb, heapMb };
    };
    await sleep(10_000);
    rows.push({ switch: 0, primary, promotedMs: 0, ...(await sample()) });
    log(`before any switch: ${JSON.stringify(rows.at(-1))}`);
    for (let n = 1; n <= switches; n++) {
      const old = primary;
      const next = l.other(old);
      const g = (await l.status(next))?.generation ?? 0;
      const t = Date.now();
      await l.lab.stopKeepalivedOn(old);
      await waitFor(`${next} promoted`, 120_000, async () => {
        const s = await l.status(next);
        return s?.role === 'primary' && s.generation !== null && s.generation > g ? s : undefined;
      }, 100);
      const promotedMs = Date.now() - t;
      await l.lab.startKeepalivedOn(old);
      await waitFor(`${old} converged as the standby`, 180_000, () => l.converged(old), 500);
      primary = next;
      await sleep(10_000);
      rows.push({ switch: n, primary, promotedMs, ...(await sample()) });
      log(`switch ${n}: ${JSON.stringify(rows.at(-1))}`);
    }
  } finally {
    await l.destroy();
  }
  const hosts = Object.keys(rows[0]?.rssMb ?? {});
  const lines = [
    `| switch | primary | ${hosts.map((h) => `RSS ${h} (MB) | heap ${h} (MB)`).join(' | ')} |`,
    `|---|---|${hosts.map(() => '---|---').join('|')}|`,
    ...rows.map((r) => `| ${r.switch} | ${r.primary} | ${hosts.map((h) => `${r.rssMb[h]} | ${r.heapMb[h] ?? '?'}`).join(' | ')} |`),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  const dir = join(import.meta.dirname, 'results');
  await mkdir(dir, { recursive: true });
  const file = join(dir, `${new Date().toISOString().slice(0, 10)}-role-memory.json`);
  await writeFile(file, JSON.stringify({ switches, containers, node: process.version, rows }, null, 2));
  process.stderr.write(`wrote ${file}\n`);
}

await main();
