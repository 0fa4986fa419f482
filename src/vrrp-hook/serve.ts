// Serves the hook app with @hono/node-server. The token policy is enforced here, where the address is known.
import { isIP } from 'node:net';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import type { Hono } from 'hono';

import { HookError } from './errors.js';

export interface ServeOptions {
  /** HOST:PORT; IPv6 hosts in brackets (`[::1]:7450`). Port 0 picks a free one. */
  listen: string;
  token: string | undefined;
  /** Allows serving without a token; honoured on a loopback host only. */
  allowNoToken: boolean;
}

export interface ServedHook {
  address: string;
  port: number;
  /** Stops listening. Open connections are cut at once, or after `graceMs` for the answers still being written. */
  close(opts?: { graceMs?: number | undefined }): Promise<void>;
}

export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(listen);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (host === undefined || !Number.isInteger(port) || port > 65535) {
    throw new HookError('HOOK_BAD_LISTEN', `expected hook listen address HOST:PORT, got ${JSON.stringify(listen)}`);
  }
  return { host, port };
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1' || /^::ffff:127\./i.test(host);
  return false;
}

/** Serve on HOST:PORT; refuses to start without a token unless the host is loopback AND allowNoToken. */
export async function serveHook(app: Pick<Hono, 'fetch'>, opts: ServeOptions): Promise<ServedHook> {
  const { host } = parseListen(opts.listen);
  if (opts.token === undefined || opts.token === '') {
    if (!isLoopback(host)) {
      throw new HookError('HOOK_NO_TOKEN', `refusing to serve the hook on non-loopback ${opts.listen} without a token`, {
        hint: 'set hookToken (TWINLAYER_HOOK_TOKEN)',
      });
    }
    if (!opts.allowNoToken) {
      throw new HookError('HOOK_NO_TOKEN', `refusing to serve the hook on ${opts.listen} without a token`, {
        hint: 'set hookToken (TWINLAYER_HOOK_TOKEN), or hookAllowNoToken=true on a loopback address',
      });
    }
  }
  return serveApp(app, opts.listen);
}

/** Serve on HOST:PORT with no token policy: for an app that serves nothing a token would guard (createMetricsApp). */
export async function serveApp(app: Pick<Hono, 'fetch'>, listen: string): Promise<ServedHook> {
  const { host, port } = parseListen(listen);
  const server = serve({ fetch: app.fetch, hostname: host, port });
  const info = await new Promise<AddressInfo>((resolve, reject) => {
    const onError = (err: Error): void => {
      reject(new HookError('HOOK_LISTEN_FAILED', `cannot listen on ${listen}: ${err.message}`, {}, { cause: err }));
    };
    server.once('error', onError);
    server.once('listening', () => {
      server.off('error', onError);
      resolve(server.address() as AddressInfo);
    });
  });
  return {
    address: info.address,
    port: info.port,
    close: (opts = {}) =>
      new Promise<void>((resolve, reject) => {
        // Keep-alive connections would hold close() open until they time out.
        const cutAll = (): void => {
          if ('closeAllConnections' in server) server.closeAllConnections();
        };
        const grace = opts.graceMs === undefined ? undefined : setTimeout(cutAll, opts.graceMs);
        server.close((err) => {
          clearTimeout(grace);
          if (err) reject(err);
          else resolve();
        });
        if (grace === undefined) cutAll();
        else if ('closeIdleConnections' in server) server.closeIdleConnections();
      }),
  };
}
