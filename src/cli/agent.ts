// `twinlayer agent`: one process per host, either role, serving the hook on every host.
import { Agent, AgentHookHandler } from '../agent/index.js';
import type { Config } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import { Metrics } from '../metrics/index.js';
import { createHookApp } from '../vrrp-hook/index.js';
import { openBucket, openDocker, pullSettings, pushSettings } from './runtime-deps.js';
import { serveUntilShutdown } from './serve.js';

export async function run(config: Config, log: Logger): Promise<void> {
  // One registry for the process: the store, the pusher and the puller report into it, the hook exposes it.
  const metrics = new Metrics();
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
  await agent.open();
  const app = createHookApp({ token: config.hookToken, handler: new AgentHookHandler(agent), log: log.child({ unit: 'vrrp-hook' }), metrics });
  // The hook listens before the first role is decided: keepalived's calls are taken (and ordered) from the start.
  const { shutdown } = await serveUntilShutdown(config, log, app, agent, store, metrics);
  await agent.start();
  log.info('agent started', { role: agent.role });
  await shutdown;
}
