// Two-stage shutdown: the first SIGINT/SIGTERM drains with a deadline, a second one exits at once.
import type { Logger } from '../log/logger.js';

export function onShutdown(log: Logger, drain: () => Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    let stopping = false;
    const handler = (signal: NodeJS.Signals): void => {
      if (stopping) {
        log.warn('second signal; exiting without draining', { signal });
        process.exit(130);
      }
      stopping = true;
      log.info('stopping', { signal });
      drain().then(resolve, (err: unknown) => {
        log.error('shutdown failed', { err });
        process.exitCode = 1;
        resolve();
      });
    };
    process.on('SIGINT', handler);
    process.on('SIGTERM', handler);
  });
}
