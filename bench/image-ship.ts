// The primary shipping the 206 MB benchmark image to the bucket (issue 12 item 4; bench/lib/cluster.ts's image:
// busybox and an incompressible payload, one layer): the image shipper (src/pusher/image-shipper.ts) against the
// embedded S3 server in its own process. Cases, `--runs` times each: a cold ship into an empty group (HEADs, docker
// save, each layer hashed and gzip'd into the state dir, the uploads; the layer goes up as a multipart upload), and a
// ship of an image already in the bucket (a HEAD per object, no save). Measured: wall time of ship(), bytes uploaded
// and stored (the bucket's images/ listed), requests by kind. Prints a table, writes bench/results/<date>-image-ship.json.
//   node --import tsx bench/image-ship.ts [--runs=3] [--kind=overlay2|containerd]      (root: a dockerd engine)
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { importBusyboxImage } from '../src/lab/busybox-image.js';
import { startEngine, type EngineKind } from '../src/lab/engine.js';
import { runtimeFor } from '../src/lab/engine-access.js';
import { createLogger } from '../src/log/logger.js';
import { Metrics } from '../src/metrics/index.js';
import { ImageShipper } from '../src/pusher/image-shipper.js';
import { S3RVER_CREDENTIALS } from '../src/s3server/index.js';
import { Bucket, S3BlobStore } from '../src/store/index.js';
import { testSignatures } from '../test/support/signing.js';
import { BUCKET, startS3Process } from './lib/s3.js';
import { summarize, type Summary } from './lib/stats.js';

const arg = (name: string): string | undefined => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const RUNS = Number(arg('runs') ?? '3');
const KIND = (arg('kind') ?? 'overlay2') as EngineKind;
const MB = 206;
/** bench/lib/cluster.ts's figure: the busybox rootfs, the rest of the image is the payload. */
const ROOTFS_BYTES = 2_000_000;
const log = (line: string): void => void process.stderr.write(`${line}\n`);

interface Case {
  case: string;
  wallMs: Summary;
  uploadedObjects: number;
  uploadedBytes: number;
  /** Requests of one run, by kind (the last run). */
  requests: Record<string, number>;
}

async function requestCounts(metrics: Metrics): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const line of (await metrics.render()).split('\n')) {
    const m = /^twinlayer_bucket_requests_total\{kind="([A-Z]+)"\} (\d+)/.exec(line);
    if (m !== null) out[m[1]!] = Number(m[2]);
  }
  return out;
}

const diff = (a: Record<string, number>, b: Record<string, number>): Record<string, number> => Object.fromEntries(Object.entries(b).map(([k, v]): [string, number] => [k, v - (a[k] ?? 0)]).filter(([, v]) => v !== 0));

const base = await mkdtemp(join(tmpdir(), 'twl-imgship-bench-'));
const s3 = await startS3Process(join(base, 's3'));
let engine: Awaited<ReturnType<typeof startEngine>> | null = null;
try {
  engine = await startEngine({ name: 'imgship-b', log, kind: KIND });
  const runtime = runtimeFor(engine);
  const imageId = await importBusyboxImage(engine.socketPath, `tl-bench-${MB}mb:1`, { payloadBytes: MB * 1_000_000 - ROOTFS_BYTES, cmd: [] });
  const identity = await runtime.imageIdentity(imageId);
  const size = await runtime.imageSize(imageId);
  if (identity === null || size === null) throw new Error(`image ${imageId} has no identity or size`);
  log(`image ${imageId} ready (${(size / 1e6).toFixed(1)} MB, ${identity.diffIds.length} layer(s))`);
  const metrics = new Metrics({ processMetrics: false });
  const store = new S3BlobStore({ bucket: BUCKET, region: 'us-east-1', endpoint: s3.endpoint, pathStyle: true, credentials: S3RVER_CREDENTIALS, metrics });
  const logger = createLogger({ level: 'warn' });
  const cases: Case[] = [];
  let stored = 0;
  try {
    const cold: number[] = [];
    const warm: number[] = [];
    let coldUp = { objects: 0, bytes: 0 };
    let coldReq: Record<string, number> = {};
    let warmReq: Record<string, number> = {};
    for (let i = 0; i < RUNS; i++) {
      const bucket = new Bucket(store, { prefix: 'twinlayer', group: `ship-${i}`, signatures: testSignatures() });
      const shipper = new ImageShipper({ runtime, bucket, dir: join(base, 'state', 'push', 'images'), log: logger, metrics });
      const signal = new AbortController().signal;
      try {
        let before = await requestCounts(metrics);
        let t0 = performance.now();
        const r = await shipper.ship(imageId, identity, signal);
        cold.push(Math.round(performance.now() - t0));
        coldUp = { objects: r.uploaded, bytes: r.bytes };
        coldReq = diff(before, await requestCounts(metrics));
        before = await requestCounts(metrics);
        t0 = performance.now();
        const again = await shipper.ship(imageId, identity, signal);
        warm.push(Math.round(performance.now() - t0));
        if (again.uploaded !== 0) throw new Error(`the second ship uploaded ${again.uploaded} objects`);
        warmReq = diff(before, await requestCounts(metrics));
        stored = 0;
        for await (const o of store.listObjects(bucket.layout.imagesPrefix)) stored += o.size;
        log(`  run ${i + 1}: cold ${cold.at(-1)} ms (${r.uploaded} objects, ${(r.bytes / 1e6).toFixed(1)} MB), present ${warm.at(-1)} ms`);
      } finally {
        await shipper.stop();
      }
    }
    cases.push({ case: 'cold: empty bucket', wallMs: summarize(cold), uploadedObjects: coldUp.objects, uploadedBytes: coldUp.bytes, requests: coldReq });
    cases.push({ case: 'image already shipped', wallMs: summarize(warm), uploadedObjects: 0, uploadedBytes: 0, requests: warmReq });
  } finally {
    store.destroy();
  }
  const req = (r: Record<string, number>): string => Object.entries(r).map(([k, v]) => `${v} ${k}`).join(', ');
  const rows = cases.map((x) => `| ${x.case} | ${x.wallMs.median} ms (${x.wallMs.min}-${x.wallMs.max}) | ${x.uploadedObjects} | ${(x.uploadedBytes / 1e6).toFixed(1)} MB | ${req(x.requests)} |`);
  process.stdout.write([
    `image shipping, tl-bench-${MB}mb:1 (${(size / 1e6).toFixed(1)} MB, ${identity.diffIds.length} layer(s)), ${KIND}, ${RUNS} runs each, medians (min-max); ${(stored / 1e6).toFixed(1)} MB stored under images/`,
    '',
    '| case | ship() wall time | objects uploaded | bytes uploaded | requests |',
    '|---|---|---|---|---|',
    ...rows,
    '',
  ].join('\n'));
  const out = join(dirname(fileURLToPath(import.meta.url)), 'results', `${new Date().toISOString().slice(0, 10)}-image-ship${KIND === 'overlay2' ? '' : `-${KIND}`}.json`);
  await writeFile(out, `${JSON.stringify({ when: new Date().toISOString(), kind: KIND, imageBytes: size, layers: identity.diffIds.length, storedBytes: stored, runs: RUNS, cases }, null, 2)}\n`);
  log(`wrote ${out}`);
} finally {
  await engine?.stop().catch((err: unknown) => log(`engine stop failed: ${String(err)}`));
  await s3.stop();
  await rm(base, { recursive: true, force: true });
}
