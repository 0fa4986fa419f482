// A unix socket standing where a Docker engine's API socket would be, that holds every connection until the test
// decides: release() relays them (and every later one) to the real engine's socket, cut() destroys them (and every
// later one), as an engine that went away would. A start-up blocked at its engine check stays blocked, for as long
// as a test needs, without any timing.
import { createConnection, createServer, type Socket } from 'node:net';
import { rm } from 'node:fs/promises';
import { relayConnection } from '../../src/lab/forward.js';

export interface HeldSocket {
  path: string;
  /** Connections held so far (those since relayed or cut included). */
  readonly held: number;
  /** Relays the held connections and every later one to `upstream`. */
  release(upstream: string): void;
  /** Destroys the held connections and every later one. */
  cut(): void;
  close(): Promise<void>;
}

export async function startHeldSocket(path: string): Promise<HeldSocket> {
  const waiting: Socket[] = [];
  const open = new Set<Socket>();
  let held = 0;
  let mode: { relay: string } | 'cut' | 'hold' = 'hold';
  const settle = (client: Socket): void => {
    if (mode === 'hold') {
      waiting.push(client);
      return;
    }
    if (mode === 'cut') {
      client.destroy();
      return;
    }
    relayConnection(client, createConnection(mode.relay), open);
  };
  const server = createServer((client) => {
    held++;
    client.on('error', () => undefined);
    settle(client);
  });
  await rm(path, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  const drain = (): void => {
    for (const c of waiting.splice(0)) settle(c);
  };
  return {
    path,
    get held() {
      return held;
    },
    release(upstream) {
      mode = { relay: upstream };
      drain();
    },
    cut() {
      mode = 'cut';
      drain();
    },
    async close() {
      for (const c of [...waiting.splice(0), ...open]) c.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(path, { force: true });
    },
  };
}
