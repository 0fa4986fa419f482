// A TCP relay in the root namespace: listens on the lab's root address and pipes every connection to a service
// that listens on the root namespace's loopback only (the S3 server, for instance), so hosts reach it at
// `rootAddress:port` without the service having to bind anything else.
import { createConnection, createServer } from 'node:net';
import type { Server } from 'node:net';

export interface Forward {
  host: string;
  port: number;
  close(): Promise<void>;
}

export function startForward(listenHost: string, listenPort: number, targetHost: string, targetPort: number): Promise<Forward> {
  const sockets = new Set<import('node:net').Socket>();
  const server: Server = createServer((client) => {
    const upstream = createConnection({ host: targetHost, port: targetPort });
    sockets.add(client);
    sockets.add(upstream);
    const drop = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(listenPort, listenHost, () => {
      server.off('error', reject);
      const addr = server.address();
      const port = typeof addr === 'object' && addr ? addr.port : listenPort;
      resolve({
        host: listenHost,
        port,
        close: () =>
          new Promise<void>((res) => {
            for (const s of sockets) s.destroy();
            server.close(() => res());
          }),
      });
    });
  });
}
