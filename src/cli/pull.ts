// `twinlayer pull`: fixed role, standby: stages changes into twins and serves the VRRP hook.
import type { Config } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import { Metrics } from '../metrics/index.js';
import { BootHandler } from '../vrrp-hook/index.js';
import { loadSeamsInTurns } from './load-in-turns.js';
import { serveWhileStarting } from './serve.js';

export async function run(config: Config, log: Logger): Promise<void> {
  const metrics = new Metrics();
  // The hook answers first; a MASTER that comes before the puller is open is held, then boots the twins.
  await serveWhileStarting(config, log, metrics, async () => {
    // Loaded once the hook answers: the AWS SDK, dockerode and the units behind them are most of a start's CPU.
    await loadSeamsInTurns();
    const [{ Puller }, { openBucket, openDocker, pullSettings }] = await Promise.all([import('../puller/index.js'), import('./runtime-deps.js')]);
    const { bucket, store } = await openBucket(config, log, 'pull', { metrics });
    const puller = new Puller({
      runtime: openDocker(config, log),
      bucket,
      log,
      ...pullSettings(config),
      metrics,
    });
    try {
      await puller.open();
    } catch (err) {
      store.destroy();
      throw err;
    }
    const hookLog = log.child({ unit: 'vrrp-hook' });
    const handler = new BootHandler({
      token: config.hookToken,
      promoter: puller,
      log: hookLog,
      finalizeDeadlineMs: config.finalizeDeadlineMs,
      bootTimeoutMs: config.bootTimeoutMs,
      metrics,
    }, hookLog);
    return { handler, daemon: puller, store, run: () => puller.start() };
  });
}
