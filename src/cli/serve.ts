// The hook of `twinlayer agent` and `twinlayer pull`, and the metrics listener of every daemon (metricsListen),
// served until the first signal.
import type { Config } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/index.js';
import { createMetricsApp, serveApp, serveHook, type ServedHook } from '../vrrp-hook/index.js';
import { onShutdown } from './shutdown.js';

/** Serves `metrics` alone on `metricsListen` when it is set; null when it is not. */
export async function serveMetrics(config: Config, log: Logger, metrics: Metrics): Promise<ServedHook | null> {
  if (config.metricsListen === undefined) return null;
  const server = await serveApp(createMetricsApp(metrics), config.metricsListen);
  log.info('metrics listening', { address: server.address, port: server.port });
  return server;
}

/** Serves the hook (and the metrics listener); a failed listen stops the daemon and throws. Resolves with the
 *  shutdown (first signal: close the listeners, stop the daemon, release the S3 client). */
export async function serveUntilShutdown(config: Config, log: Logger, app: Parameters<typeof serveHook>[0], daemon: { stop(): Promise<void> }, store: { destroy(): void }, metrics: Metrics): Promise<{ shutdown: Promise<void> }> {
  let server: Awaited<ReturnType<typeof serveHook>>;
  let metricsServer: ServedHook | null = null;
  try {
    server = await serveHook(app, { listen: config.hookListen, token: config.hookToken, allowNoToken: config.hookAllowNoToken });
    try {
      metricsServer = await serveMetrics(config, log, metrics);
    } catch (err) {
      await server.close();
      throw err;
    }
  } catch (err) {
    await daemon.stop();
    throw err;
  }
  // The handlers go in before the line: "hook listening" is what supervisors and tests wait for before they signal,
  // and a SIGTERM that comes before process.on('SIGTERM') meets Node's default action (death by the signal, no drain).
  const shutdown = onShutdown(log, async () => {
    await server.close();
    await metricsServer?.close();
    await daemon.stop();
    store.destroy();
  });
  log.info('hook listening', { address: server.address, port: server.port });
  return { shutdown };
}
