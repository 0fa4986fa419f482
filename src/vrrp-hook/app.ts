// The Hono app keepalived's notify script calls. Built by a factory from its dependencies; tested with app.request().
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { HTTPException } from 'hono/http-exception';

import { requireBearer } from './auth.js';
import { BootHandler } from './boot-handler.js';
import { Metrics } from '../metrics/index.js';
import { registerHookMetrics, routeLabel } from './metrics.js';
import { parseNotification } from './notification.js';
import { NotReadyError } from './starting.js';
import type { HookOptions } from './types.js';

const DEFAULT_MAX_BODY_BYTES = 4096;

/** GET /metrics and /healthz alone, without a token: for `metricsListen`, apart from the hook. */
export function createMetricsApp(metrics: Metrics): Hono {
  const app = new Hono();
  app.get('/healthz', (c) => c.text('ok'));
  app.get('/metrics', async (c) => c.body(await metrics.render(), 200, { 'content-type': metrics.contentType }));
  app.notFound((c) => c.json({ error: 'not found' }, 404));
  return app;
}

export function createHookApp(opts: HookOptions): Hono {
  const maxBodyBytes = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const log = opts.log.child({ unit: 'vrrp-hook' });
  const handler = 'handler' in opts ? opts.handler : new BootHandler(opts, log);
  const metrics = opts.metrics ?? new Metrics();
  const countRequest = registerHookMetrics(metrics);
  handler.registerMetrics(metrics);
  const auth = requireBearer(opts.token);
  const app = new Hono();

  // Outermost, so it sees the final status of every answer, the ones onError produced included.
  app.use('*', async (c, next) => {
    await next();
    countRequest(routeLabel(c.req.path), c.res.status);
  });

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

  app.get('/metrics', async (c) => c.body(await metrics.render(), 200, { 'content-type': metrics.contentType }));

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
