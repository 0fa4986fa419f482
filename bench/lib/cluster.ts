// The bench's two hosts on one machine: engine A (primary, `twinlayer push`) and engine B (standby,
// `twinlayer pull` with its hook), the embedded S3 server, the service images, and helpers to run containers.
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { join } from 'node:path';
import PQueue from 'p-queue';
import type { DockerRuntime } from '../../src/docker/index.js';
import { copyImage, importBusyboxImage } from '../../src/lab/busybox-image.js';
import { dockerCli, startEngine, type Engine, type EngineKind } from '../../src/lab/engine.js';
import { runtimeFor, twinlayerEngineEnv } from '../../src/lab/engine-access.js';
import { GroupKeys } from '../../src/lab/group-keys.js';
import { spawnTwinlayer, type TwinlayerProcess } from '../../test/support/twinlayer.js';
import { waitFor } from '../../src/lab/wait.js';
import { BUCKET, PREFIX, S3_ENV, startS3Process, type S3Process } from './s3.js';

/** The busybox root filesystem (binary + applet links + a few files) is about this many bytes. */
const ROOTFS_BYTES = 2_000_000;

export interface Cluster {
  base: string;
  s3: S3Process;
  a: Engine;
  b: Engine;
  runtimeA: DockerRuntime;
  runtimeB: DockerRuntime;
  token: string;
  /** The signing keys of bench-a and bench-b: both sign and trust both. */
  keys: GroupKeys;
  /** Every twinlayer process started, for cleanup. */
  procs: Set<TwinlayerProcess>;
}

/** `kind`: both engines' image store (src/lab/engine.ts): overlay2 (dockerd 20.10) or the containerd store (dockerd 26). */
export async function startCluster(base: string, log: (line: string) => void, kind: EngineKind = 'overlay2'): Promise<Cluster> {
  // First: nothing to clean up when it fails.
  const keys = await GroupKeys.create(join(base, 'keys'), ['bench-a', 'bench-b']);
  const s3 = await startS3Process(join(base, 's3'));
  const engines = await Promise.allSettled([startEngine({ name: 'bench-a', log, kind }), startEngine({ name: 'bench-b', log, kind })]);
  const [a, b] = engines.map((e) => (e.status === 'fulfilled' ? e.value : null));
  if (!a || !b) {
    await Promise.allSettled([a?.stop(), b?.stop(), s3.stop()]);
    const failed = engines.find((e) => e.status === 'rejected');
    throw failed?.status === 'rejected' ? failed.reason : new Error('engine start failed');
  }
  return {
    base,
    s3,
    a,
    b,
    keys,
    runtimeA: runtimeFor(a),
    runtimeB: runtimeFor(b),
    token: randomBytes(16).toString('hex'),
    procs: new Set(),
  };
}

export async function stopCluster(c: Cluster): Promise<void> {
  await Promise.allSettled([...c.procs].map((p) => p.kill('SIGKILL')));
  const results = await Promise.allSettled([c.a.stop(), c.b.stop(), c.s3.stop()]);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}

export const imageTag = (mb: number): string => `tl-bench-${mb}mb:1`;

/** A busybox image of about `mb` MB (busybox + an incompressible payload), on A and, same id, on B. */
export async function makeServiceImage(c: Cluster, mb: number): Promise<void> {
  await importBusyboxImage(c.a.socketPath, imageTag(mb), { payloadBytes: mb * 1_000_000 - ROOTFS_BYTES, cmd: [] });
  await copyImage(c.a.socketPath, c.b.socketPath, imageTag(mb));
}

/** Image size as the engine reports it (bytes). */
export async function imageSize(c: Cluster, mb: number): Promise<number> {
  const out = await dockerCli(c.a, ['image', 'inspect', '-f', '{{.Size}}', imageTag(mb)]);
  return Number(out.trim());
}

export interface Service {
  name: string;
  port: number;
}

/** Runs busybox httpd containers on A (--network host, each on its own loopback port), labelled `label=true`. */
const usedPorts = new Set<number>();

/** A loopback port below the ephemeral range (32768+), bindable now and never handed out twice by this process:
 *  two containers (or a container and a client socket) on one port would make httpd exit at start. */
async function servicePort(): Promise<number> {
  for (let attempt = 0; attempt < 1000; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 10_000);
    if (usedPorts.has(port)) continue;
    const free = await new Promise<boolean>((resolve) => {
      const srv = createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (free) {
      usedPorts.add(port);
      return port;
    }
  }
  throw new Error('no free loopback port in 20000-29999');
}

export async function runServices(c: Cluster, mb: number, label: string, names: string[]): Promise<Service[]> {
  const q = new PQueue({ concurrency: 4 });
  const services: Service[] = [];
  for (const name of names) services.push({ name, port: await servicePort() });
  await Promise.all(services.map((s) => q.add(() => dockerCli(c.a, [
    'run', '-d', '--name', s.name, '--label', `${label}=true`, '--network', 'host', imageTag(mb),
    'httpd', '-f', '-p', `127.0.0.1:${s.port}`, '-h', '/var/www',
  ]))));
  // httpd exits at once when it cannot bind: check every service answers before anything else is measured.
  await Promise.all(services.map((s) => waitFor(`${s.name} answering on ${s.port}`, 30_000, async () => {
    const res = await fetch(`http://127.0.0.1:${s.port}/`, { signal: AbortSignal.timeout(1_000) });
    await res.arrayBuffer();
    return true;
  }, 50)));
  return services;
}

/** Removes containers on an engine (force), in one CLI call. */
export async function removeContainers(engine: Engine, names: string[]): Promise<void> {
  if (names.length > 0) await dockerCli(engine, ['rm', '-f', ...names], 120_000);
}

export interface GroupOptions {
  group: string;
  label: string;
  pollIntervalMs: number;
  /** Endpoint override (a counting proxy) per side. */
  endpoint?: string;
  hookPort?: number;
  logLevel?: 'debug' | 'info' | 'warn';
  /** More environment for the process (NODE_OPTIONS=--cpu-prof …). */
  env?: Record<string, string>;
}

export function twinlayerEnv(c: Cluster, side: 'a' | 'b', o: GroupOptions): Record<string, string> {
  return {
    ...S3_ENV,
    TWINLAYER_ENDPOINT: o.endpoint ?? c.s3.endpoint,
    TWINLAYER_BUCKET: BUCKET,
    TWINLAYER_PREFIX: PREFIX,
    TWINLAYER_PATH_STYLE: 'true',
    TWINLAYER_GROUP: o.group,
    TWINLAYER_LABEL: o.label,
    TWINLAYER_HOST_ID: side === 'a' ? 'bench-a' : 'bench-b',
    ...c.keys.env(side === 'a' ? 'bench-a' : 'bench-b'),
    ...twinlayerEngineEnv(side === 'a' ? c.a : c.b),
    TWINLAYER_STATE_DIR: join(c.base, `state-${o.group}-${side}`),
    TWINLAYER_POLL_INTERVAL_MS: String(o.pollIntervalMs),
    TWINLAYER_HOOK_LISTEN: `127.0.0.1:${o.hookPort ?? 7450}`,
    TWINLAYER_HOOK_TOKEN: c.token,
    TWINLAYER_LOG_LEVEL: o.logLevel ?? 'info',
    ...o.env,
  };
}

export function spawnPusher(c: Cluster, o: GroupOptions): TwinlayerProcess {
  const p = spawnTwinlayer(['push'], twinlayerEnv(c, 'a', o));
  c.procs.add(p);
  void p.exited.then(() => c.procs.delete(p));
  return p;
}

/** A puller with its hook; resolves once the hook listens. */
export async function spawnPuller(c: Cluster, o: GroupOptions & { hookPort: number }): Promise<TwinlayerProcess> {
  const p = spawnTwinlayer(['pull'], twinlayerEnv(c, 'b', o));
  c.procs.add(p);
  void p.exited.then(() => c.procs.delete(p));
  await p.waitForLine(/hook listening/, 30_000);
  return p;
}

export interface HookStatus {
  role: string;
  containers: Array<{ name: string; latestSeq: number | null; stagedSeq: number; lag: number | null; twin: string; reason?: string }>;
}

export async function hookStatus(c: Cluster, hookPort: number): Promise<HookStatus> {
  const res = await fetch(`http://127.0.0.1:${hookPort}/v1/status`, { headers: { authorization: `Bearer ${c.token}` }, signal: AbortSignal.timeout(5_000) });
  return (await res.json()) as HookStatus;
}

/** Waits until the puller reports every one of `names` with a stopped twin and nothing left to stage. */
export async function waitAllStaged(c: Cluster, hookPort: number, names: string[], timeoutMs: number): Promise<void> {
  const want = new Set(names);
  await waitFor(`${names.length} twins staged`, timeoutMs, async () => {
    const s = await hookStatus(c, hookPort);
    const ready = s.containers.filter((x) => want.has(x.name) && x.twin === 'stopped' && x.latestSeq !== null && x.lag === 0);
    return ready.length === want.size ? true : undefined;
  }, 100);
}

/** The upper dir of a container on an engine (bounded wait: a twin appears when the puller creates it). */
export async function upperDir(runtime: DockerRuntime, name: string): Promise<string> {
  return waitFor(`upper dir of ${name}`, 60_000, async () => (await runtime.resolveLayers(name).catch(() => undefined))?.upperDir, 100);
}
