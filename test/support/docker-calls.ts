// Counts the Docker API requests a client makes: a relay on a unix socket in front of the engine's, reading the
// request lines as they pass (keep-alive connections carry several; a request body that held such a line would be
// counted too, which the few small JSON bodies the puller sends never do).
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { rm } from 'node:fs/promises';
import { relayConnection } from '../../src/lab/forward.js';

export interface DockerCallCounter {
  path: string;
  /** Requests by kind (method and path with ids and names folded), since the last reset. */
  counts(): Map<string, number>;
  total(): number;
  reset(): void;
  close(): Promise<void>;
}

const requestLine = /(?:^|\r\n)(GET|POST|PUT|DELETE|HEAD) (\S+) HTTP\/1\.[01]\r\n/g;

/** `/v1.47/containers/a-c01/json?x` -> `containers/*\/json`: one kind per endpoint whatever the container. */
function kindOf(method: string, url: string): string {
  const path = (url.split('?')[0] ?? '').replace(/^\/v[0-9.]+/, '');
  const parts = path.split('/').filter((p) => p !== '');
  const folded = parts.map((p, i) => (i === 1 && parts.length > 2 ? '*' : p));
  return `${method} /${folded.join('/')}`;
}

export async function startDockerCallCounter(path: string, upstream: string): Promise<DockerCallCounter> {
  await rm(path, { force: true });
  const open = new Set<Socket>();
  let counts = new Map<string, number>();
  const server: Server = createServer((client) => {
    // A request line may be split across two reads: the tail of the previous read is kept (bounded).
    let carry = '';
    client.on('data', (buf: Buffer) => {
      const text = carry + buf.toString('latin1');
      for (const m of text.matchAll(requestLine)) {
        const kind = kindOf(m[1]!, m[2]!);
        counts.set(kind, (counts.get(kind) ?? 0) + 1);
      }
      const lastBreak = text.lastIndexOf('\r\n');
      carry = (lastBreak < 0 ? text : text.slice(lastBreak)).slice(-2048);
    });
    relayConnection(client, createConnection(upstream), open);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  return {
    path,
    counts: () => new Map(counts),
    total: () => [...counts.values()].reduce((a, b) => a + b, 0),
    reset: () => {
      counts = new Map();
    },
    close: async () => {
      for (const s of open) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
