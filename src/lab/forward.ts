// A TCP relay in the root namespace: listens on the lab's root address and pipes every connection to a service
// that listens on the root namespace's loopback only (the S3 server, for instance), so hosts reach it at
// `rootAddress:port` without the service having to bind anything else.
import { createConnection, createServer } from 'node:net';
import type { Server, Socket } from 'node:net';

/** Pipes `client` and `upstream` into each other, both kept in `open` until either ends (then both are destroyed). */
export function relayConnection(client: Socket, upstream: Socket, open: Set<Socket>): void {
  open.add(client);
  open.add(upstream);
  const drop = (): void => {
    client.destroy();
    upstream.destroy();
    open.delete(client);
    open.delete(upstream);
  };
  client.on('error', drop).on('close', drop);
  upstream.on('error', drop).on('close', drop);
  client.pipe(upstream);
  upstream.pipe(client);
}

export interface Forward {
  host: string;
  port: number;
  /** Cuts the path: stops listening and drops open connections (clients get ECONNREFUSED) until accept(). */
  refuse(): Promise<void>;
  /** Listens again on the same address and port. */
  accept(): Promise<void>;
  close(): Promise<void>;
}

export function startForward(listenHost: string, listenPort: number, targetHost: string, targetPort: number): Promise<Forward> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => relayConnection(client, createConnection({ host: targetHost, port: targetPort }), sockets));
  const listen = (port: number): Promise<number> =>
    new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, listenHost, () => {
        server.off('error', reject);
        const addr = server.address();
        resolve(typeof addr === 'object' && addr ? addr.port : port);
      });
    });
  const stop = (): Promise<void> =>
    new Promise<void>((res) => {
      for (const s of sockets) s.destroy();
      if (!server.listening) return res();
      server.close(() => res());
    });
  return listen(listenPort).then((port) => ({
    host: listenHost,
    port,
    refuse: stop,
    accept: async () => {
      if (!server.listening) await listen(port);
    },
    close: stop,
  }));
}
