// `twinlayer pull`: fixed role, standby: stages changes into twins and serves the VRRP hook.
import type { Config } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import { Metrics } from '../metrics/index.js';
import { Puller } from '../puller/index.js';
import { createHookApp } from '../vrrp-hook/index.js';
import { openBucket, openDocker, pullSettings } from './runtime-deps.js';
import { serveUntilShutdown } from './serve.js';

export async function run(config: Config, log: Logger): Promise<void> {
  const metrics = new Metrics();
  const { bucket, store } = await openBucket(config, log, 'pull', { metrics });
  const puller = new Puller({
    runtime: openDocker(config, log),
    bucket,
    log,
    ...pullSettings(config),
    metrics,
  });
  await puller.open();
  const app = createHookApp({
    token: config.hookToken,
    promoter: puller,
    log: log.child({ unit: 'vrrp-hook' }),
    finalizeDeadlineMs: config.finalizeDeadlineMs,
    bootTimeoutMs: config.bootTimeoutMs,
    metrics,
  });
  const { shutdown } = await serveUntilShutdown(config, log, app, puller, store, metrics);
  puller.start();
  await shutdown;
}
