// A relay on a unix socket in front of another (a Docker engine's API socket) that a test cuts and restores: the
// engine runs on, but whoever talks to it through the relay finds it gone (ENOENT, the socket file is removed) and
// back. Connections open at the cut are destroyed, so a keep-alive pool cannot reach the engine either.
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { relayConnection } from '../../src/lab/forward.js';

export interface UnixRelay {
  path: string;
  /** Stops listening and destroys every open connection. */
  cut(): Promise<void>;
  /** Listens again on the same path. */
  restore(): Promise<void>;
  close(): Promise<void>;
}

export async function startUnixRelay(path: string, upstream: string): Promise<UnixRelay> {
  const open = new Set<Socket>();
  let server: Server | null = null;
  const listen = async (): Promise<void> => {
    const s = createServer((client) => relayConnection(client, createConnection(upstream), open));
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(path, () => resolve());
    });
    server = s;
  };
  const stop = async (): Promise<void> => {
    const s = server;
    server = null;
    for (const socket of open) socket.destroy();
    open.clear();
    if (s !== null) await new Promise<void>((resolve) => s.close(() => resolve()));
  };
  await listen();
  return { path, cut: stop, restore: listen, close: stop };
}
