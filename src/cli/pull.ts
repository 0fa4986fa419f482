// `twinlayer pull`: fixed role, standby: stages changes into twins and serves the VRRP hook.
import type { Config } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import { loadSeamsInTurns } from './load-in-turns.js';
import { serveWhileStarting } from './serve.js';

export async function run(config: Config, log: Logger): Promise<void> {
  // The hook answers first; a MASTER that comes before the puller is open is held, then boots the twins.
  await serveWhileStarting(config, log, async () => {
    // Loaded once the hook answers: the AWS SDK, dockerode and the units behind them are most of a start's CPU.
    await loadSeamsInTurns();
    // One registry for the process: the store, the pusher and the puller report into it, the hook exposes it.
    const { Metrics } = await import('../metrics/index.js');
    const metrics = new Metrics();
    const [{ Puller }, { openBucket, openDocker, pullSettings }, { BootHandler }] = await Promise.all([import('../puller/index.js'), import('./runtime-deps.js'), import('../vrrp-hook/index.js')]);
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
    return { handler, metrics, daemon: puller, store, run: () => puller.start() };
  });
}
