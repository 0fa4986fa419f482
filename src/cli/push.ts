// `twinlayer push`: fixed role, primary: watches the protected containers and ships their changes.
import type { Config } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import { Metrics } from '../metrics/index.js';
import { Pusher } from '../pusher/index.js';
import { openBucket, openDocker, pushSettings } from './runtime-deps.js';
import { onShutdown } from './shutdown.js';

export async function run(config: Config, log: Logger): Promise<void> {
  const metrics = new Metrics();
  const { bucket, store } = await openBucket(config, log, 'push', { metrics });
  const pusher = new Pusher({
    runtime: openDocker(config, log),
    bucket,
    log,
    ...pushSettings(config),
    metrics,
  });
  // No hook here: metrics are served only on metricsListen, when it is set; without it the HTTP server's modules
  // (hono, its Node adapter: ~2.5 MB of RSS) are not loaded at all.
  const metricsServer = config.metricsListen === undefined ? null : await (await import('./serve.js')).serveMetrics(config, log, metrics);
  const done = onShutdown(log, async () => {
    await metricsServer?.close();
    await pusher.stop();
    store.destroy();
  });
  try {
    await pusher.start();
  } catch (err) {
    // An open listener would keep the process from exiting with the start-up error.
    await metricsServer?.close();
    throw err;
  }
  await done;
}
