// `twinlayer agent`: one process per host, either role, serving the hook on every host.
import type { Config } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import { loadSeamsInTurns } from './load-in-turns.js';
import { serveWhileStarting } from './serve.js';

export async function run(config: Config, log: Logger): Promise<void> {
  // The hook answers first; keepalived's calls are held until the agent is open, then taken (and ordered) by it.
  await serveWhileStarting(config, log, async () => {
    // Loaded once the hook answers: the AWS SDK, dockerode and the units behind them are most of a start's CPU.
    await loadSeamsInTurns();
    // One registry for the process: the store, the pusher and the puller report into it, the hook exposes it.
    const { Metrics } = await import('../metrics/index.js');
    const metrics = new Metrics();
    const [{ Agent, AgentHookHandler }, { openBucket, openDocker, pullSettings, pushSettings }] = await Promise.all([import('../agent/index.js'), import('./runtime-deps.js')]);
    const { bucket, store } = await openBucket(config, log, 'agent', { requireReachable: false, metrics });
    const agent = new Agent({
      runtime: openDocker(config, log),
      bucket,
      log,
      ...pushSettings(config),
      ...pullSettings(config),
      finalizeDeadlineMs: config.finalizeDeadlineMs,
      bootTimeoutMs: config.bootTimeoutMs,
      vrrpStateFile: config.vrrpStateFile,
      fenceIntervalMs: config.fenceIntervalMs,
      backupSettleMs: config.backupSettleMs,
      stopTimeoutSeconds: config.stopTimeoutSeconds,
      metrics,
    });
    try {
      await agent.open();
    } catch (err) {
      store.destroy();
      throw err;
    }
    return {
      handler: new AgentHookHandler(agent),
      metrics,
      daemon: agent,
      store,
      run: async () => {
        await agent.start();
        log.info('agent started', { role: agent.role });
      },
    };
  });
}
