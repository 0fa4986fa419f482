// The hook of `twinlayer agent` and `twinlayer pull`, and the metrics listener of every daemon (metricsListen),
// served until the first signal. The hook listens first, before the daemon's modules (the AWS SDK, dockerode,
// prom-client) load and before its first bucket and engine round trips: /healthz answers from the process's first
// moments, and keepalived's calls are held until the daemon is ready (vrrp-hook/starting.ts). This module loads
// only what that early hook needs; the rest comes with the daemon.
import type { Hono } from 'hono';
import type { Config } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/index.js';
import { hookRoutes } from '../vrrp-hook/routes.js';
import { serveApp, serveHook, type ServedHook } from '../vrrp-hook/serve.js';
import { StartingHandler } from '../vrrp-hook/starting.js';
import type { VrrpHandler } from '../vrrp-hook/types.js';
import { onShutdown } from './shutdown.js';

/** How long the answers to calls held during a start that failed may take to be written before the process exits. */
const FAILED_START_GRACE_MS = 1_000;

/** Serves `metrics` alone on `metricsListen` when it is set; null when it is not. */
export async function serveMetrics(config: Config, log: Logger, metrics: Metrics): Promise<ServedHook | null> {
  if (config.metricsListen === undefined) return null;
  const { createMetricsApp } = await import('../vrrp-hook/app.js');
  const server = await serveApp(createMetricsApp(metrics), config.metricsListen);
  log.info('metrics listening', { address: server.address, port: server.port });
  return server;
}

/** A daemon opened behind the hook. */
export interface OpenedDaemon {
  /** Acts on the hook's calls from now on (the held ones first). */
  handler: VrrpHandler;
  /** The process's registry: the hook's counters and the handler's gauges join it, GET /metrics exposes it. */
  metrics: Metrics;
  daemon: { stop(): Promise<void> };
  store: { destroy(): void };
  /** Runs once the handler takes the calls: the agent's first decision, the puller's polling. */
  run(): Promise<void> | void;
}

/** Serves the hook, then opens the daemon with `open` and, once it is open, the metrics listener; a failed listen or
 *  open stops the start and throws. Resolves after the first signal's drain: close the listeners, let a start in
 *  progress finish, stop the daemon, release the S3 client. */
export async function serveWhileStarting(config: Config, log: Logger, open: () => Promise<OpenedDaemon>): Promise<void> {
  const hookLog = log.child({ unit: 'vrrp-hook' });
  const starting = new StartingHandler({ log: hookLog, bootTimeoutMs: config.bootTimeoutMs });
  // The same routes throughout; until the daemon is open they have no registry (nothing counted, /metrics 503).
  let app: Hono = hookRoutes({ token: config.hookToken, handler: starting, log: hookLog, metrics: null });
  const server = await serveHook({ fetch: (...args) => app.fetch(...args) }, { listen: config.hookListen, token: config.hookToken, allowNoToken: config.hookAllowNoToken });
  let metricsServer: ServedHook | null = null;
  let closed: Promise<void> | null = null;
  const closeListeners = (graceMs?: number): Promise<void> =>
    (closed ??= Promise.all([server.close({ graceMs }), metricsServer?.close({ graceMs })]).then(() => undefined));

  let stopping = false;
  let opening: Promise<OpenedDaemon> | null = null;
  // The handlers go in before the first line: a supervisor (or a test) may signal as soon as the hook answers, and a
  // SIGTERM that comes before process.on('SIGTERM') meets Node's default action (death by the signal, no drain).
  const shutdown = onShutdown(log, async () => {
    stopping = true;
    await closeListeners();
    // A start in progress ends first (opened or failed): nothing half open is left behind.
    const opened = await opening?.catch(() => null);
    if (opened) {
      await opened.daemon.stop();
      opened.store.destroy();
    }
  });
  log.info('hook answering while starting', { address: server.address, port: server.port });
  opening = open();
  let opened: OpenedDaemon;
  let createHookApp: (typeof import('../vrrp-hook/app.js'))['createHookApp'];
  try {
    opened = await opening;
    // Loaded here so that from the stopping check below to run() nothing waits: a signal in between would see a
    // daemon being started while it stops it.
    ({ createHookApp } = await import('../vrrp-hook/app.js'));
    if (!stopping) {
      // Before any call reaches the daemon: a failed listen stops a daemon that has acted on nothing yet.
      metricsServer = await serveMetrics(config, log, opened.metrics);
      // A signal while it began listening: the drain closed the listeners it knew of.
      if (stopping) await metricsServer?.close();
    }
  } catch (err) {
    starting.failed(err);
    // The calls held meanwhile are answered 503 with the reason before the listeners go.
    await closeListeners(FAILED_START_GRACE_MS);
    // Opened, but the metrics listener failed: stop what was opened.
    const done = await opening.catch(() => null);
    if (done) {
      await done.daemon.stop();
      done.store.destroy();
    }
    throw err;
  }
  if (!stopping) {
    // The calls held while starting go to the daemon first, in the order they came; then the routes with the
    // process's registry take over (a call between the two goes through `starting`, straight to the daemon).
    starting.ready(opened.handler);
    app = createHookApp({ token: config.hookToken, handler: opened.handler, log: hookLog, metrics: opened.metrics });
    // "hook listening" still means what supervisors and tests have waited for: the daemon behind the hook is open.
    log.info('hook listening', { address: server.address, port: server.port });
    await opened.run();
  }
  await shutdown;
}
