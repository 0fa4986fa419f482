// The hook's routes, apart from the metrics registry: createHookApp (app.ts) builds them with the process's
// registry; while the daemon starts they are served without one (the registry's prom-client loads after the hook
// listens, with the daemon). Tested with app.request().
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { HTTPException } from 'hono/http-exception';

import type { Logger } from '../log/logger.js';
import { requireBearer } from './auth.js';
import { parseNotification } from './notification.js';
import { NotReadyError } from './starting.js';
import type { VrrpHandler } from './types.js';

const DEFAULT_MAX_BODY_BYTES = 4096;

/** Routes are labelled by their pattern, never by the raw path, so label cardinality stays bounded. */
export const knownRoutes = ['/v1/vrrp', '/v1/status', '/healthz', '/metrics'] as const;
export type RouteLabel = (typeof knownRoutes)[number] | 'other';

export function routeLabel(path: string): RouteLabel {
  return (knownRoutes as readonly string[]).includes(path) ? (path as RouteLabel) : 'other';
}

/** What the routes need of a registry: count each answer, render the exposition. */
export interface RouteMetrics {
  count(route: RouteLabel, code: number): void;
  render(): Promise<{ body: string; contentType: string }>;
}

export interface RouteOptions {
  token: string | undefined;
  handler: VrrpHandler;
  log: Logger;
  maxBodyBytes?: number | undefined;
  /** null while the daemon starts: nothing is counted and GET /metrics answers 503. */
  metrics: RouteMetrics | null;
}

export function hookRoutes(o: RouteOptions): Hono {
  const maxBodyBytes = o.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const { handler, log, metrics } = o;
  const auth = requireBearer(o.token);
  const app = new Hono();

  // Outermost, so it sees the final status of every answer, the ones onError produced included.
  if (metrics !== null) {
    app.use('*', async (c, next) => {
      await next();
      metrics.count(routeLabel(c.req.path), c.res.status);
    });
  }

  app.onError((err, c) => {
    if (err instanceof HTTPException) {
      if (err.res !== undefined) return err.getResponse();
      return c.json({ error: err.message }, err.status);
    }
    log.error('request failed', { method: c.req.method, path: c.req.path, error: err });
    return c.json({ error: 'internal error' }, 500);
  });

  app.notFound((c) => c.json({ error: 'not found' }, 404));

  app.get('/healthz', (c) => c.text('ok'));

  app.get('/metrics', async (c) => {
    if (metrics === null) return c.json({ error: 'starting: no metrics until the daemon is open', phase: 'starting' }, 503);
    const { body, contentType } = await metrics.render();
    return c.body(body, 200, { 'content-type': contentType });
  });

  app.get('/v1/status', auth, async (c) => {
    try {
      return c.json(await handler.status());
    } catch (err) {
      const body = typeof err === 'object' && err !== null && 'body' in err && typeof err.body === 'object' ? err.body : {};
      return c.json({ error: err instanceof Error ? err.message : String(err), ...body }, 503);
    }
  });

  app.post(
    '/v1/vrrp',
    auth,
    bodyLimit({
      maxSize: maxBodyBytes,
      onError: () => {
        throw new HTTPException(413, { message: `request body larger than ${maxBodyBytes} bytes` });
      },
    }),
    async (c) => {
      const parsed = parseNotification(await c.req.text());
      if (!parsed.ok) throw new HTTPException(400, { message: `invalid notification: ${parsed.reason}` });
      try {
        return c.json(await handler.notify(parsed.value));
      } catch (err) {
        // Not acted on (yet): a status notify.sh logs as a failure, with the reason and whether it is held.
        if (err instanceof NotReadyError) return c.json({ error: err.message, ...err.body }, 503);
        throw err;
      }
    },
  );

  return app;
}
