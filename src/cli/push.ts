// `twinlayer push`: fixed role, primary: watches the protected containers and ships their changes.
import type { Config } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import { Pusher } from '../pusher/index.js';
import { openBucket, openDocker, pushSettings } from './runtime-deps.js';
import { onShutdown } from './shutdown.js';

export async function run(config: Config, log: Logger): Promise<void> {
  const { bucket, store } = await openBucket(config, log, 'push');
  const pusher = new Pusher({
    runtime: openDocker(config, log),
    bucket,
    log,
    ...pushSettings(config),
  });
  const done = onShutdown(log, async () => {
    await pusher.stop();
    store.destroy();
  });
  await pusher.start();
  await done;
}
