// The hook of `twinlayer agent` and `twinlayer pull`, served until the first signal.
import type { Config } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import { serveHook } from '../vrrp-hook/index.js';
import { onShutdown } from './shutdown.js';

/** Serves the hook; a failed listen stops the daemon and throws. Resolves with the shutdown (first signal: close the
 *  hook, stop the daemon, release the S3 client). */
export async function serveUntilShutdown(config: Config, log: Logger, app: Parameters<typeof serveHook>[0], daemon: { stop(): Promise<void> }, store: { destroy(): void }): Promise<{ shutdown: Promise<void> }> {
  let server: Awaited<ReturnType<typeof serveHook>>;
  try {
    server = await serveHook(app, { listen: config.hookListen, token: config.hookToken, allowNoToken: config.hookAllowNoToken });
  } catch (err) {
    await daemon.stop();
    throw err;
  }
  // The handlers go in before the line: "hook listening" is what supervisors and tests wait for before they signal,
  // and a SIGTERM that comes before process.on('SIGTERM') meets Node's default action (death by the signal, no drain).
  const shutdown = onShutdown(log, async () => {
    await server.close();
    await daemon.stop();
    store.destroy();
  });
  log.info('hook listening', { address: server.address, port: server.port });
  return { shutdown };
}
