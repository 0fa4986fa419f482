// Child process for lock.test.ts: takes the state lock, says so on stdout, and holds it until it is killed
// (or, should the test forget it, for at most a minute).
import { acquireStateLock } from '../../../src/state/lock.js';
import { TwinlayerError } from '../../../src/log/errors.js';

const [stateDir, name] = process.argv.slice(2);
if (stateDir === undefined || name === undefined) {
  process.stderr.write('usage: lock-holder.ts STATE_DIR NAME\n');
  process.exit(64);
}
try {
  await acquireStateLock(stateDir, name);
  process.stdout.write(`locked ${process.pid}\n`);
  setTimeout(() => process.exit(0), 60_000);
} catch (err) {
  process.stdout.write(`failed ${err instanceof TwinlayerError ? err.code : String(err)}\n`);
  process.exit(3);
}
