// The daemons' heavy modules, loaded once the hook listens, one unit at a time with turns of the event loop in
// between: Node evaluates an import's whole module graph in one go, and the hook answers no call meanwhile. In
// turns, a call waits for one unit at most (prom-client in the metrics unit, the AWS SDK in the store, dockerode in
// the docker unit), not for all.
import { setImmediate as nextTurn } from 'node:timers/promises';

/** Loop turns between two units: a call waiting at the socket needs a few (accept, read, answer). */
const TURNS = 3;

async function turns(): Promise<void> {
  for (let i = 0; i < TURNS; i++) await nextTurn();
}

export async function loadSeamsInTurns(): Promise<void> {
  await import('../metrics/index.js');
  await turns();
  await import('../store/index.js');
  await turns();
  await import('../docker/index.js');
  await turns();
}
