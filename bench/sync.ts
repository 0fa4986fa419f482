// Sync workload for one service image: a 4 KiB config change, a 1 MB change and a bulk change as large as the
// image, each measured from the moment the write returned (inotify on the primary's upper dir) to (a) the commit
// visible in the bucket (head.json polled every few ms) and (b) the change staged in the twin's upper dir; then
// the floors (one PutObject of the same bytes, one GetObject of them back) and the peer (lsyncd + rsync of the upper dir).
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { freePort } from '../test/support/twinlayer.js';
import {
  removeContainers, runServices, spawnPuller, spawnPusher, twinlayerEnv, upperDir, type Cluster, type GroupOptions,
} from './lib/cluster.js';
import { startLsyncd } from './lib/lsyncd.js';
import { measure, ProcMeter, type ProcUsage } from './lib/proc-meter.js';
import { HeadWatcher, S3Floors } from './lib/s3.js';
import { summarize, type Summary } from './lib/stats.js';
import { ContainerShell, fileHolds, pollUntil, WriteClock, writeCommand } from './lib/writer.js';

export interface ChangeKind {
  id: '4KiB' | '1MB' | 'bulk';
  bytes: number;
  /** Path inside the container. */
  path: string;
  samples: number;
  lsyncdSamples: number;
}

export interface SyncSample {
  bucketMs: number;
  twinMs: number;
  /** Commits the change took (a file still being written when a burst flushes goes out in the next one). */
  commits: number;
  /** The pusher's own lag (first event seen -> published) for the commits of this sample. */
  pusherLagMs: number[];
  /** Wall-clock times (ms since the epoch) of the write's last event, the commit seen in the bucket and the twin
   *  holding it, to lay beside the processes' log lines (absent in results before bulk4). */
  at?: { write: number; bucket: number; twin: number };
}

export interface SyncPoint {
  imageMB: number;
  change: ChangeKind['id'];
  bytes: number;
  bucket: Summary;
  twin: Summary;
  floorPut: Summary;
  /** One GetObject of the same bytes into a file, right after each floor PutObject (absent in results before
   *  2026-12-07). */
  floorGet?: Summary;
  lsyncd: Summary;
  commits: Summary;
  usage: Record<string, ProcUsage>;
  samples: SyncSample[];
}

export interface SyncOptions {
  pollIntervalMs: number;
  headPollMs: number;
  changes: ChangeKind[];
  log: (line: string) => void;
  /** Given the pusher's and the puller's log lines at the end (sync-bulk.ts keeps them to see where a change went). */
  keepLines?: (pusher: string[], puller: string[]) => void;
  /** The pusher's and puller's log level (default info; debug logs each build with its torn paths, each staging). */
  logLevel?: 'debug' | 'info';
  /** More environment for the pusher and the puller (sync-bulk.ts --env=K=V: a config knob for an A/B). */
  env?: Record<string, string>;
}

export function changeKinds(imageMB: number, samples: number, bulkSamples: number, lsyncdBulkSamples: number): ChangeKind[] {
  return [
    { id: '4KiB', bytes: 4096, path: '/etc/app.conf', samples, lsyncdSamples: samples },
    { id: '1MB', bytes: 1_000_000, path: '/srv/data/blob-1mb.bin', samples, lsyncdSamples: samples },
    { id: 'bulk', bytes: imageMB * 1_000_000, path: '/payload/blob.bin', samples: bulkSamples, lsyncdSamples: lsyncdBulkSamples },
  ];
}

const token = (): string => `tok-${randomBytes(8).toString('hex')}`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function appliedSeq(file: string, container: string): Promise<number> {
  const text = await readFile(file, 'utf8').catch(() => null);
  if (text === null) return 0;
  return (JSON.parse(text) as { containers?: Record<string, { seq: number }> }).containers?.[container]?.seq ?? 0;
}

export async function runSyncWorkload(c: Cluster, imageMB: number, o: SyncOptions): Promise<SyncPoint[]> {
  const group = `sync${imageMB}`;
  const name = `svc${imageMB}`;
  const [svc] = await runServices(c, imageMB, `bench.${group}`, [name]);
  if (!svc) throw new Error('no service');
  const g: GroupOptions = { group, label: `bench.${group}`, pollIntervalMs: o.pollIntervalMs, hookPort: await freePort(), ...(o.logLevel === undefined ? {} : { logLevel: o.logLevel }), ...(o.env === undefined ? {} : { env: o.env }) };
  const pusher = spawnPusher(c, g);
  const puller = await spawnPuller(c, { ...g, hookPort: g.hookPort! });
  const shell = new ContainerShell(c.a, name);
  const clocks = new Map<string, WriteClock>();
  const work = await mkdtemp(join(c.base, `sync-${imageMB}-`));
  let watcher: HeadWatcher | null = null;
  const floor = new S3Floors(c.s3.endpoint);
  try {
    const writing = JSON.parse(await pusher.waitForLine(/"pusher writing"/, 30_000)) as { generation: number };
    watcher = new HeadWatcher(c.s3.endpoint, group, writing.generation, o.headPollMs);
    watcher.start();
    const upperA = (await c.runtimeA.resolveLayers(name)).upperDir;
    const appliedFile = join(twinlayerEnv(c, 'b', g)['TWINLAYER_STATE_DIR']!, 'pull', group, 'applied.json');

    // Warm-up: each target dir copied up on the primary (so it can be watched) and staged on the twin. The twin
    // appears only after the first commit (a generation without a head is not followed yet), so write first.
    const warmups = o.changes.map((ch) => ({ ch, file: join(dirname(ch.path), '.bench-warm'), t: token() }));
    for (const w of warmups) await shell.run(writeCommand(w.file, 64, w.t));
    const upperB = await upperDir(c.runtimeB, name);
    for (const w of warmups) {
      await pollUntil(`warm-up ${w.file} staged`, 60_000, 10, () => fileHolds(join(upperB, w.file), w.t, 64));
      clocks.set(w.ch.id, new WriteClock(join(upperA, dirname(w.ch.path))));
    }

    const settle = async (seqBefore: number): Promise<number> => {
      let stable = 0;
      let last = -1;
      await pollUntil('pusher and puller idle', 120_000, 25, async () => {
        const head = watcher!.latest.get(name) ?? 0;
        const applied = await appliedSeq(appliedFile, name);
        const same = head > seqBefore && applied === head;
        stable = same && head === last ? stable + 1 : 0;
        last = head;
        return stable >= 4; // 100 ms with nothing new: longer than the pusher's 50 ms quiet debounce
      });
      return last;
    };

    const sample = async (ch: ChangeKind): Promise<SyncSample> => {
      const t = token();
      const clock = clocks.get(ch.id)!;
      const file = basename(ch.path);
      clock.reset(file);
      const seqBefore = watcher!.latest.get(name) ?? 0;
      const linesBefore = pusher.lines.length;
      const twinFile = join(upperB, ch.path);
      const staged = pollUntil(`${ch.id} staged on the twin`, 300_000, 2, () => fileHolds(twinFile, t, ch.bytes));
      staged.catch(() => undefined); // awaited below; a failed write must not leave it unhandled
      await shell.run(writeCommand(ch.path, ch.bytes, t));
      const tTwin = await staged;
      const seq = await settle(seqBefore);
      const tWrite = clock.last(file);
      // The change's commit is the first one that shipped the file whole; a burst flushed while the file was
      // still being written ships a shorter (or torn, so skipped) version first.
      let shippedAt = seq;
      for (let s = seqBefore + 1; s <= seq; s++) {
        if (((await watcher!.recordBytes(s)) ?? 0) >= ch.bytes) {
          shippedAt = s;
          break;
        }
      }
      const tBucket = watcher!.firstSeenAtLeast(name, shippedAt);
      if (tWrite === undefined || tBucket === undefined) throw new Error(`sample ${ch.id}: no write event or no head`);
      const pusherLagMs = pusher.lines.slice(linesBefore).filter((l) => l.includes('"published"')).map((l) => (JSON.parse(l) as { lagMs: number }).lagMs);
      const wall = (t: number): number => Math.round(performance.timeOrigin + t);
      return { bucketMs: tBucket - tWrite, twinMs: tTwin - tWrite, commits: seq - seqBefore, pusherLagMs, at: { write: wall(tWrite), bucket: wall(tBucket), twin: wall(tTwin) } };
    };

    const results: SyncPoint[] = [];
    for (const ch of o.changes) {
      o.log(`  sync ${imageMB} MB image, ${ch.id} change: ${ch.samples} samples`);
      const meters = { pusher: new ProcMeter(pusher.child.pid!), puller: new ProcMeter(puller.child.pid!) };
      const { result: samples, usage } = await measure(meters, async () => {
        const out: SyncSample[] = [];
        for (let i = 0; i < ch.samples; i++) out.push(await sample(ch));
        return out;
      });
      results.push({
        imageMB, change: ch.id, bytes: ch.bytes,
        bucket: summarize(samples.map((s) => s.bucketMs)),
        twin: summarize(samples.map((s) => s.twinMs)),
        floorPut: summarize([]),
        floorGet: summarize([]),
        lsyncd: summarize([]),
        commits: summarize(samples.map((s) => s.commits)),
        usage,
        samples,
      });
    }

    // Floor: PutObject of the same number of bytes, same server, same SDK settings.
    for (const point of results) {
      const ch = o.changes.find((x) => x.id === point.change)!;
      const src = join(work, `floor-${ch.id}.bin`);
      await writeFile(src, randomBytes(ch.bytes));
      const puts: number[] = [];
      const gets: number[] = [];
      for (let i = 0; i < ch.samples; i++) {
        const t = await floor.putThenGet(src, `${src}.get`);
        puts.push(t.putMs);
        gets.push(t.getMs);
      }
      point.floorPut = summarize(puts);
      point.floorGet = summarize(gets);
      await rm(src, { force: true });
    }

    // Peer: lsyncd mirroring the upper dir; the pusher is stopped so both do not share the two cores.
    await pusher.kill('SIGTERM');
    const target = join(work, 'lsyncd-target');
    await mkdir(target);
    const lsyncd = await startLsyncd(upperA, target, work);
    try {
      for (const point of results) {
        const ch = o.changes.find((x) => x.id === point.change)!;
        o.log(`  lsyncd ${imageMB} MB image, ${ch.id} change: ${ch.lsyncdSamples} samples`);
        const clock = clocks.get(ch.id)!;
        const file = basename(ch.path);
        const times: number[] = [];
        for (let i = 0; i < ch.lsyncdSamples; i++) {
          const t = token();
          clock.reset(file);
          const present = pollUntil(`${ch.id} in the lsyncd target`, 300_000, 2, () => fileHolds(join(target, ch.path), t, ch.bytes));
          present.catch(() => undefined);
          await shell.run(writeCommand(ch.path, ch.bytes, t));
          const tPresent = await present;
          const tWrite = clock.last(file);
          if (tWrite === undefined) throw new Error('lsyncd sample: no write event');
          times.push(tPresent - tWrite);
          await sleep(50);
        }
        point.lsyncd = summarize(times);
      }
    } finally {
      await lsyncd.stop();
    }
    return results;
  } catch (err) {
    o.log(`sync ${imageMB} MB failed; pusher said:\n${pusher.lines.slice(-12).join('\n')}\npuller said:\n${puller.lines.slice(-12).join('\n')}`);
    throw err;
  } finally {
    o.keepLines?.(pusher.lines, puller.lines);
    await watcher?.stop();
    for (const cl of clocks.values()) cl.close();
    shell.close();
    floor.destroy();
    await Promise.allSettled([pusher.kill('SIGTERM'), puller.kill('SIGTERM')]);
    await removeContainers(c.a, [name]).catch(() => undefined);
    await removeContainers(c.b, [name]).catch(() => undefined);
    await rm(work, { recursive: true, force: true });
  }
}
