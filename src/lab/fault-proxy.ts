// Lives in the lab (not test/support) because the chaos soak (bench/chaos) drives it too.
// An HTTP proxy on 127.0.0.1 in front of an S3 server whose behaviour a test flips per request:
// pass through, reset the connection, hang (the client times out), answer 503 SlowDown or 500, truncate a
// response body, lose the answer of a request the server did carry out (a reset, or an answer that never comes), or
// refuse connections altogether (nothing listening on the port).
import http from 'node:http';
import type { Socket } from 'node:net';

export type Fault = 'reset' | 'hang' | 'slowdown' | 'error500' | 'truncate' | 'lose-answer' | 'stall-answer';

/** An answer of the server behind the proxy: by then it has carried the request out (`at`: epoch ms). */
export interface ProxyAnswer { method: string; path: string; status: number; at: number }

/** Which requests a fault hits (say, blob GETs only: the journal still reads, staging cannot download). */
export interface FaultFilter { method?: string; path?: RegExp }

export interface FaultProxy {
  endpoint: string;
  port: number;
  /**
   * The next `count` requests (default 1; Infinity until pass()) get `fault`. `truncate` counts GET requests only:
   * it sends the real headers and half the body, then cuts the connection. `lose-answer` forwards the request,
   * waits for the server's whole answer, then resets the client's connection instead of relaying it; `stall-answer`
   * likewise, but leaves the connection open and silent (the client times out: `hang`, once the server has carried
   * the request out). `only`: the
   * fault hits (and counts) only the requests of that method and/or whose path (less the query) matches; the others
   * pass.
   */
  fail(fault: Fault, count?: number, only?: FaultFilter): void;
  /** Back to pass-through for every request. */
  pass(): void;
  /** Stops listening and cuts open connections: clients get ECONNREFUSED. */
  refuse(): Promise<void>;
  /** Listens again on the same port. */
  accept(): Promise<void>;
  /** `bodyBytes`: bytes of answers' bodies the proxy took from the server (a client that stops reading stops it, give
   *  or take the sockets' buffers). */
  readonly stats: { requests: number; bodyBytes: number; faults: Record<Fault, number> };
  /** Calls `listener` with every answer of the server, also one the proxy then loses or truncates (the chaos soak
   *  learns when a commit reached the bucket); returns a function that removes it. */
  onAnswer(listener: (a: ProxyAnswer) => void): () => void;
  close(): Promise<void>;
}

function errorXml(code: string, message: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><RequestId>fault-proxy</RequestId></Error>`;
}

export async function startFaultProxy(upstream: string): Promise<FaultProxy> {
  const up = new URL(upstream);
  const agent = new http.Agent({ keepAlive: true });
  const sockets = new Set<Socket>();
  let fault: Fault | null = null;
  let remaining = 0;
  let filter: FaultFilter | undefined;
  const listeners = new Set<(a: ProxyAnswer) => void>();
  const stats = { requests: 0, bodyBytes: 0, faults: { reset: 0, hang: 0, slowdown: 0, error500: 0, truncate: 0, 'lose-answer': 0, 'stall-answer': 0 } as Record<Fault, number> };

  const take = (method: string, path: string): Fault | null => {
    if (fault === null || remaining <= 0) return null;
    if (fault === 'truncate' && method !== 'GET') return null;
    if (filter?.method !== undefined && filter.method !== method) return null;
    if (filter?.path !== undefined && !filter.path.test(path)) return null;
    const f = fault;
    remaining--;
    if (remaining <= 0) fault = null;
    stats.faults[f]++;
    return f;
  };

  const answerError = (req: http.IncomingMessage, res: http.ServerResponse, status: number, code: string): void => {
    // Read the request body first so the client is not cut off mid-upload.
    req.resume();
    req.on('end', () => {
      const body = req.method === 'HEAD' ? '' : errorXml(code, 'injected by the fault proxy');
      res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  };

  const server = http.createServer((req, res) => {
    stats.requests++;
    const f = take(req.method ?? '', (req.url ?? '').split('?')[0] ?? '');
    if (f === 'reset') {
      req.socket.resetAndDestroy();
      return;
    }
    if (f === 'hang') {
      req.resume();
      return; // never answered; the socket is destroyed at close()
    }
    if (f === 'slowdown') return answerError(req, res, 503, 'SlowDown');
    if (f === 'error500') return answerError(req, res, 500, 'InternalError');
    const upReq = http.request(
      { host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers, agent },
      (upRes) => {
        const answer: ProxyAnswer = { method: req.method ?? '', path: req.url ?? '', status: upRes.statusCode ?? 0, at: Date.now() };
        upRes.on('data', (chunk: Buffer) => {
          stats.bodyBytes += chunk.length;
        });
        // A client gone mid-answer: the rest is not read from the server.
        res.on('close', () => {
          if (!upRes.complete) upRes.destroy();
        });
        for (const l of listeners) l(answer);
        if (f === 'lose-answer') {
          upRes.resume();
          upRes.on('end', () => req.socket.resetAndDestroy());
          return;
        }
        if (f === 'stall-answer') {
          // Never answered; the socket is destroyed when the client gives up, or at close().
          upRes.resume();
          return;
        }
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        if (f !== 'truncate') {
          upRes.pipe(res);
          return;
        }
        const half = Math.floor(Number(upRes.headers['content-length'] ?? '0') / 2);
        let sent = 0;
        const cut = (): void => {
          upRes.destroy();
          // Flush what was written, then cut the connection: the client sees a short body.
          res.socket?.end(() => res.socket?.destroy());
        };
        upRes.on('data', (chunk: Buffer) => {
          if (sent >= half) return;
          const part = chunk.subarray(0, half - sent);
          res.write(part);
          sent += part.length;
          if (sent >= half) cut();
        });
        upRes.on('end', () => res.socket?.destroy());
      },
    );
    upReq.on('error', () => res.socket?.destroy());
    req.pipe(upReq);
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  const listen = (port: number): Promise<void> =>
    new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  const stop = (): Promise<void> =>
    new Promise((resolve) => {
      if (!server.listening) return resolve();
      server.close(() => resolve());
      for (const s of sockets) s.destroy();
    });

  await listen(0);
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('fault proxy: no TCP address');
  const port = address.port;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    stats,
    fail(f, count = 1, only) {
      fault = f;
      remaining = count;
      filter = only;
    },
    pass() {
      fault = null;
      remaining = 0;
      filter = undefined;
    },
    refuse: stop,
    accept: () => listen(port),
    onAnswer(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async close() {
      await stop();
      agent.destroy();
    },
  };
}
