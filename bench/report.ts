// The Markdown report (published figures beside ours, every figure with its floor or peer ratio) and the
// stdout summary, both rendered from the JSON result. `node --import tsx bench/report.ts FILE.json` re-renders.
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { PUBLISHED_BY_COUNT, PUBLISHED_BY_SIZE } from './published.js';
import type { BulkProfile } from './profile.js';
import type { RecoveryPoint } from './recovery.js';
import { formatMs, formatRatio, NONE } from './lib/format.js';
import { median, ratio, summarize } from './lib/stats.js';
import type { SyncPoint } from './sync.js';

export interface BenchResult {
  date: string;
  mode: 'full' | 'quick';
  durationSeconds: number;
  machine: Record<string, string>;
  plan: Record<string, unknown>;
  images: Record<number, number>;
  sync: SyncPoint[];
  profile: BulkProfile[];
  recovery: RecoveryPoint[];
  /** Workloads that failed (the run went on without them). */
  errors: string[];
}

const mbps = (bytes: number, millis: number): string => (millis > 0 ? `${((bytes / 1e6) / (millis / 1000)).toFixed(0)} MB/s` : NONE);

function table(head: string[], rows: string[][]): string {
  return [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

const point = (r: BenchResult, mb: number, change: string): SyncPoint | undefined => r.sync.find((p) => p.imageMB === mb && p.change === change);
const rec = (r: BenchResult, mb: number, n: number): RecoveryPoint | undefined => r.recovery.find((p) => p.imageMB === mb && p.containers === n);

/** Where the time of a sync goes: write -> the pusher published (its own lag, from its log), -> visible to a
 *  head poll, -> staged on the twin. */
function breakdown(p: SyncPoint): { lag: number; toBucket: number; bucketToTwin: number } {
  return {
    lag: median(p.samples.map((s) => s.pusherLagMs.at(-1) ?? Number.NaN).filter((v) => !Number.isNaN(v))),
    toBucket: p.bucket.median,
    bucketToTwin: median(p.samples.map((s) => s.twinMs - s.bucketMs)),
  };
}

export function headlineTables(r: BenchResult): string {
  const bySize = table(
    ['image', 'sync, CRIU (pub.)', 'sync, image layer (pub.)', 'twinlayer sync 4 KiB → bucket / → twin (median)', 'same, 1 MB', 'same, bulk = image size', 'recovery, CRIU (pub.)', 'recovery, image layer (pub.)', 'twinlayer recovery (median of runs)', '÷ floor'],
    PUBLISHED_BY_SIZE.map((pub) => {
      const s4 = point(r, pub.imageMB, '4KiB');
      const s1 = point(r, pub.imageMB, '1MB');
      const sb = point(r, pub.imageMB, 'bulk');
      const rp = rec(r, pub.imageMB, 1);
      return [
        `${pub.imageMB} MB`, formatMs(pub.syncCriuMs), formatMs(pub.syncLayerMs),
        s4 ? `${formatMs(s4.bucket.median)} / ${formatMs(s4.twin.median)}` : NONE,
        s1 ? `${formatMs(s1.bucket.median)} / ${formatMs(s1.twin.median)}` : NONE,
        sb ? `${formatMs(sb.bucket.median)} / ${formatMs(sb.twin.median)}` : NONE,
        formatMs(pub.recoveryCriuMs), formatMs(pub.recoveryLayerMs),
        rp ? formatMs(rp.total.median) : NONE,
        rp ? formatRatio(ratio(rp.total.median, rp.floorTotal.median)) : NONE,
      ];
    }),
  );
  const byCount = table(
    ['containers (46 MB)', 'avg sync, CRIU (pub.)', 'avg sync, image layer (pub.)', 'recovery, CRIU (pub.)', 'recovery, image layer (pub.)', 'twinlayer recovery total (median)', 'mean per container', 'floor total', '÷ floor', 'vs published image layer'],
    PUBLISHED_BY_COUNT.map((pub) => {
      const rp = rec(r, 46, pub.containers);
      return [
        String(pub.containers), formatMs(pub.avgSyncCriuMs), formatMs(pub.avgSyncLayerMs), formatMs(pub.recoveryCriuMs), formatMs(pub.recoveryLayerMs),
        rp ? formatMs(rp.total.median) : NONE, rp ? formatMs(rp.mean.median) : NONE, rp ? formatMs(rp.floorTotal.median) : NONE,
        rp ? formatRatio(ratio(rp.total.median, rp.floorTotal.median)) : NONE,
        rp ? `${(pub.recoveryLayerMs / rp.total.median).toFixed(1)}× faster` : NONE,
      ];
    }),
  );
  return `${bySize}\n\n${byCount}`;
}

export function renderReport(r: BenchResult): string {
  const out: string[] = [];
  out.push(`# twinlayer benchmark — ${r.date.slice(0, 10)} (${r.mode})`);
  out.push('');
  out.push(`Run took ${Math.round(r.durationSeconds / 6) / 10} min on ${r.machine['cpus']}; kernel ${r.machine['kernel']}; ${r.machine['dockerd']}; Node ${r.machine['node']}; ${r.machine['lsyncd']}; ${r.machine['rsync']}.`);
  out.push('Both engines, the S3 server (s3rver, `twinlayer s3`), pusher, puller and lsyncd run on this one machine: "primary" and "standby" share its two cores and its disk.');
  out.push('The CRIU and "image layer" columns are the published reference figures (issue 4); CRIU cannot run here (see LAB.md), so they are quoted, not re-measured.');
  out.push('');
  if ((r.errors ?? []).length > 0) {
    out.push('**Failed workloads** (their figures are missing below):');
    out.push('');
    for (const e of r.errors) out.push(`- ${e.split('\n')[0]}`);
    out.push('');
  }
  out.push('## Published figures beside ours');
  out.push('');
  out.push(headlineTables(r));
  out.push('');
  out.push('"avg sync" for 10/20/40 containers is not one of our workloads: a change is shipped per container as it happens, so its sync time does not depend on how many other containers are protected; the per-change figures are in the sync table below.');
  out.push('');

  out.push('## Sync: write returned → commit in the bucket → staged in the twin');
  out.push('');
  out.push(table(
    ['image', 'change', 'N', '→ bucket median / p90 / max', '→ twin median / p90 / max', 'floor: PutObject median', 'bucket ÷ floor', 'floor: GetObject median', 'twin ÷ (PutObject + GetObject)', 'lsyncd → target median (N)', 'twin ÷ lsyncd', 'commits per change (median / max)'],
    r.sync.map((p) => [
      `${p.imageMB} MB`, p.change, String(p.bucket.n),
      `${formatMs(p.bucket.median)} / ${formatMs(p.bucket.p90)} / ${formatMs(p.bucket.max)}`,
      `${formatMs(p.twin.median)} / ${formatMs(p.twin.p90)} / ${formatMs(p.twin.max)}`,
      formatMs(p.floorPut.median), formatRatio(ratio(p.bucket.median, p.floorPut.median)),
      p.floorGet === undefined ? NONE : formatMs(p.floorGet.median), p.floorGet === undefined ? NONE : formatRatio(ratio(p.twin.median, p.floorPut.median + p.floorGet.median)),
      `${formatMs(p.lsyncd.median)} (${p.lsyncd.n})`, formatRatio(ratio(p.twin.median, p.lsyncd.median)),
      `${p.commits.median} / ${p.commits.max}`,
    ]),
  ));
  out.push('');
  out.push('Where the sync time goes (medians): the pusher\'s own lag is from the first inotify event it saw to the head written (its `published` log line: 50 ms quiet debounce + scan + tar + gzip + sha256 + PutObject of blob, record and head); bucket → twin is the puller\'s poll wait, GET, sha256 check, gunzip/untar into the upper dir and the fsync\'d applied state.');
  out.push('');
  out.push(table(
    ['image', 'change', 'pusher lag (its log)', 'write → bucket', 'bucket → twin'],
    r.sync.map((p) => {
      const b = breakdown(p);
      return [`${p.imageMB} MB`, p.change, formatMs(b.lag), formatMs(b.toBucket), formatMs(b.bucketToTwin)];
    }),
  ));
  out.push('');

  out.push('## Bulk throughput (changed data shipped end to end)');
  out.push('');
  out.push(table(
    ['image', 'bulk bytes', 'N', 'write → twin median', 'end to end', 'write → bucket', 'floor: one PutObject', 'lsyncd (rsync) to target'],
    r.sync.filter((p) => p.change === 'bulk').map((p) => [
      `${p.imageMB} MB`, `${(p.bytes / 1e6).toFixed(0)} MB`, String(p.twin.n), formatMs(p.twin.median), mbps(p.bytes, p.twin.median), mbps(p.bytes, p.bucket.median), mbps(p.bytes, p.floorPut.median), mbps(p.bytes, p.lsyncd.median),
    ]),
  ));
  out.push('');

  if (r.profile.length > 0) {
    out.push('Profile of a bulk change, each step of the pipeline run alone in process (`bench/profile.ts`) on one changed file of random bytes:');
    out.push('');
    out.push(table(
      ['changed bytes', 'pusher: build (tar + gzip + sha256)', 'of which gzip (level by sampling: 0 for this random payload) + sha256', 'plain copy of the bytes', 'pusher: upload', 'puller: download + sha256', 'puller: stage (gunzip, untar, fsync, rename)', 'floor: one PutObject'],
      r.profile.map((p) => [`${(p.bytes / 1e6).toFixed(0)} MB`, formatMs(p.buildMs), formatMs(p.gzipHashMs), formatMs(p.copyMs), formatMs(p.uploadMs), formatMs(p.downloadMs), formatMs(p.stageMs), formatMs(p.floorPutMs)]),
    ));
    out.push('');
  }

  out.push('## Recovery: MASTER posted → every twin answers HTTP 200 with the latest content');
  out.push('');
  out.push(table(
    ['containers', 'image', 'runs', 'total median / p90 / max', 'mean per container', 'total ÷ N', 'floor: Docker API start, same concurrency (median)', '÷ floor', 'hook: finalize / start (median)', 'initial sync of all N'],
    r.recovery.map((p) => [
      String(p.containers), `${p.imageMB} MB`, String(p.total.n),
      `${formatMs(p.total.median)} / ${formatMs(p.total.p90)} / ${formatMs(p.total.max)}`,
      formatMs(p.mean.median), formatMs(p.total.median / p.containers), formatMs(p.floorTotal.median), formatRatio(ratio(p.total.median, p.floorTotal.median)),
      `${formatMs(median(p.runs.map((x) => x.hook?.finalizeMs ?? Number.NaN)))} / ${formatMs(median(p.runs.map((x) => x.hook?.startMs ?? Number.NaN)))}`,
      formatMs(p.stageAllMs),
    ]),
  ));
  out.push('');

  out.push('## Resources');
  out.push('');
  out.push('CPU seconds (user + system) and peak RSS (VmHWM, reset per workload through /proc/PID/clear_refs) of the `twinlayer push` and `twinlayer pull` processes.');
  out.push('');
  out.push(table(
    ['workload', 'pusher CPU', 'pusher peak RSS', 'puller CPU', 'puller peak RSS'],
    [
      ...r.sync.map((p) => [`sync ${p.imageMB} MB image, ${p.bytes.toLocaleString('en')} B change × ${p.bucket.n}`, `${p.usage['pusher']?.cpuSeconds} s`, `${p.usage['pusher']?.peakRssMB} MB`, `${p.usage['puller']?.cpuSeconds} s`, `${p.usage['puller']?.peakRssMB} MB`]),
      ...r.recovery.map((p) => [`initial sync of ${p.containers} × ${p.imageMB} MB`, `${p.staging['pusher']?.cpuSeconds} s`, `${p.staging['pusher']?.peakRssMB} MB`, `${p.staging['puller']?.cpuSeconds} s`, `${p.staging['puller']?.peakRssMB} MB`]),
      ...r.recovery.map((p) => {
        const cpu = summarize(p.runs.map((x) => x.puller?.cpuSeconds ?? Number.NaN));
        const rss = summarize(p.runs.map((x) => x.puller?.peakRssMB ?? Number.NaN));
        return [`recovery of ${p.containers} × ${p.imageMB} MB (median of runs)`, NONE, NONE, `${cpu.median} s`, `${rss.median} MB`];
      }),
    ],
  ));
  out.push('');
  const idle = r.recovery.flatMap((p) => (p.idle ?? []).map((i) => ({ p, i })));
  if (idle.length > 0) {
    out.push('S3 requests per minute when idle (counted by an HTTP proxy in front of the S3 server, one per process):');
    out.push('');
    out.push(table(
      ['protected containers', 'puller poll interval', 'window', 'pusher req/min', 'puller req/min', 'pusher CPU in window', 'puller CPU in window', 'RSS pusher / puller at its end'],
      idle.map(({ p, i }) => [String(p.containers), `${i.pollIntervalMs} ms`, `${i.windowSeconds} s`, String(i.pusherRequestsPerMinute), String(i.pullerRequestsPerMinute), `${i.pusherCpuSeconds} s`, `${i.pullerCpuSeconds} s`, i.pusherRssMB === undefined ? NONE : `${i.pusherRssMB} / ${i.pullerRssMB} MB`]),
    ));
    out.push('');
  }

  out.push('## Method');
  out.push('');
  out.push([
    '- Two private Docker engines (dockerd 20.10, overlay2) on this machine, `A` (primary) and `B` (standby); the S3 server is `twinlayer s3` (s3rver) in its own process on 127.0.0.1. `twinlayer push` and `twinlayer pull` run as child processes (bin/twinlayer.js) with `TWINLAYER_POLL_INTERVAL_MS=' + String(r.plan['pollIntervalMs']) + '` and every other setting at its default (debounce 50 ms quiet / 500 ms max, start concurrency 8).',
    '- Service images: busybox (Debian busybox-static) plus an incompressible payload, made with `docker import`, copied to B with save/load (same image id). Each container runs `busybox httpd -f -p 127.0.0.1:PORT` with `--network host` on its own port. Measured sizes: ' + Object.entries(r.images).map(([mb, b]) => `${mb} MB → ${(b / 1e6).toFixed(1)} MB`).join(', ') + '.',
    '- Changes: 4 KiB rewrite of /etc/app.conf, 1 MB rewrite of /srv/data/blob-1mb.bin, and a bulk rewrite of /payload/blob.bin as large as the image (token line + /dev/urandom). They are written by one long-running `sh` inside the container (`docker exec -i`, commands on its stdin), so no exec round trip sits inside a sample.',
    '- "Write returned": an inotify watch (node fs.watch) on the primary\'s upper dir, in the bench process; the time of the last modify event of the file is the return of its last write(2). The container\'s shell acknowledges on stdout only so the bench knows the write is over; that ack is not the timestamp.',
    '- "In the bucket": the bench polls the group\'s head.json every ' + String(r.plan['headPollMs']) + ' ms with a conditional GET (If-None-Match) and records when each seq first appears; a sample ends at the seq the puller staged once everything is idle (the change\'s last commit). "Staged in the twin": the bench polls the twin\'s upper dir every 2 ms until the file holds the token and the exact size (staging renames whole files in).',
    '- Floors for sync: one PutObject of the same number of random bytes to the same server with the same SDK settings (no checksums, path style), and one GetObject of that object streamed into a file (a write → staged cannot beat the two). Peer: lsyncd ' + String(r.machine['lsyncd']) + ' with `default.rsync`, `delay = 0` (accepted; it syncs on the closed write), mirroring the primary\'s upper dir to a local dir while the pusher is stopped; time from the write to the file with the token and full size in the target.',
    '- Recovery: N containers on A, latest content written into each /var/www/index.html, `push` + `pull` until every twin is staged (the "initial sync" column), primaries stopped (docker stop -t 0). Each run starts a fresh `twinlayer pull` (the hook promotes once per process; its state dir keeps the staged seqs), waits until it reports every twin stopped with lag 0, posts MASTER and polls every port (' + '5 ms for one container, 20 ms for more' + ') until it answers 200 with that container\'s token; between runs the twins are stopped again. The floor run starts the same stopped containers with DockerRuntime.startContainers (concurrency 8) from the bench process and polls the same way.',
    '- Samples per point: ' + `${String(r.plan['samples'])} for the 4 KiB and 1 MB changes; ${JSON.stringify(r.plan['bulkSamples'])} for the bulk change (fewer than 30 to fit the time budget: one 206 MB sample takes several seconds); lsyncd bulk ${String(r.plan['lsyncdBulkSamples'])}; recovery ${String(r.plan['recoveryRuns'])} runs per point, each followed by a floor run.`,
  ].join('\n'));
  out.push('');
  return out.join('\n') + '\n';
}

export function renderStdout(r: BenchResult): string {
  const lines = [headlineTables(r), ''];
  lines.push(table(['image', 'change', 'N', '→ bucket median', '→ twin median', 'p90 / max (twin)', '÷ floor', '÷ lsyncd'], r.sync.map((p) => [
    `${p.imageMB} MB`, p.change, String(p.twin.n), formatMs(p.bucket.median), formatMs(p.twin.median), `${formatMs(p.twin.p90)} / ${formatMs(p.twin.max)}`,
    formatRatio(ratio(p.bucket.median, p.floorPut.median)), formatRatio(ratio(p.twin.median, p.lsyncd.median)),
  ])));
  return lines.join('\n');
}

// Re-render a stored result: node --import tsx bench/report.ts bench/results/DATE.json
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = process.argv[2];
  if (!file) throw new Error('usage: report.ts RESULT.json');
  const result = JSON.parse(await readFile(file, 'utf8')) as BenchResult;
  await writeFile(file.replace(/\.json$/, '.md'), renderReport(result));
  process.stdout.write(renderStdout(result) + '\n');
}
