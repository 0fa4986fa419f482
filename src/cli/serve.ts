// The hook of `twinlayer agent` and `twinlayer pull`, and the metrics listener of every daemon (metricsListen),
// served until the first signal. The hook listens first, before the daemon's modules load and before its first
// bucket and engine round trips: /healthz answers from the process's first moments, and keepalived's calls are
// held until the daemon is ready (vrrp-hook/starting.ts).
import type { Config } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/index.js';
import { createHookApp, createMetricsApp, serveApp, serveHook, StartingHandler, type ServedHook, type VrrpHandler } from '../vrrp-hook/index.js';
import { onShutdown } from './shutdown.js';

/** How long the answers to calls held during a start that failed may take to be written before the process exits. */
const FAILED_START_GRACE_MS = 1_000;

/** Serves `metrics` alone on `metricsListen` when it is set; null when it is not. */
export async function serveMetrics(config: Config, log: Logger, metrics: Metrics): Promise<ServedHook | null> {
  if (config.metricsListen === undefined) return null;
  const server = await serveApp(createMetricsApp(metrics), config.metricsListen);
  log.info('metrics listening', { address: server.address, port: server.port });
  return server;
}

/** A daemon opened behind the hook. */
export interface OpenedDaemon {
  /** Acts on the hook's calls from now on (the held ones first). */
  handler: VrrpHandler;
  daemon: { stop(): Promise<void> };
  store: { destroy(): void };
  /** Runs once the handler takes the calls: the agent's first decision, the puller's polling. */
  run(): Promise<void> | void;
}

/** Serves the hook (and the metrics listener), then opens the daemon with `open`; a failed listen or open stops
 *  the start and throws. Resolves after the first signal's drain: close the listeners, let a start in progress
 *  finish, stop the daemon, release the S3 client. */
export async function serveWhileStarting(config: Config, log: Logger, metrics: Metrics, open: () => Promise<OpenedDaemon>): Promise<void> {
  const hookLog = log.child({ unit: 'vrrp-hook' });
  const starting = new StartingHandler({ log: hookLog, bootTimeoutMs: config.bootTimeoutMs });
  const app = createHookApp({ token: config.hookToken, handler: starting, log: hookLog, metrics });
  const server = await serveHook(app, { listen: config.hookListen, token: config.hookToken, allowNoToken: config.hookAllowNoToken });
  let metricsServer: ServedHook | null = null;
  try {
    metricsServer = await serveMetrics(config, log, metrics);
  } catch (err) {
    await server.close();
    throw err;
  }
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
  try {
    opened = await opening;
  } catch (err) {
    starting.failed(err);
    // The calls held meanwhile are answered 503 with the reason before the listeners go.
    await closeListeners(FAILED_START_GRACE_MS);
    throw err;
  }
  if (!stopping) {
    starting.ready(opened.handler);
    // "hook listening" still means what supervisors and tests have waited for: the daemon behind the hook is open.
    log.info('hook listening', { address: server.address, port: server.port });
    await opened.run();
  }
  await shutdown;
}
