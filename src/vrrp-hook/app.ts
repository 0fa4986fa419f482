// The Hono app keepalived's notify script calls. Built by a factory from its dependencies; tested with app.request().
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { HTTPException } from 'hono/http-exception';

import { requireBearer } from './auth.js';
import { Boot } from './boot.js';
import { HookMetrics, routeLabel } from './metrics.js';
import { parseNotification } from './notification.js';
import type { HookOptions } from './types.js';

const DEFAULT_MAX_BODY_BYTES = 4096;

export function createHookApp(opts: HookOptions): Hono {
  const maxBodyBytes = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const log = opts.log.child({ unit: 'vrrp-hook' });
  const boot = new Boot({ promoter: opts.promoter, log, finalizeDeadlineMs: opts.finalizeDeadlineMs, bootTimeoutMs: opts.bootTimeoutMs });
  const metrics = new HookMetrics();
  const auth = requireBearer(opts.token);
  const app = new Hono();

  // Outermost, so it sees the final status of every answer, the ones onError produced included.
  app.use('*', async (c, next) => {
    await next();
    metrics.countRequest(routeLabel(c.req.path), c.res.status);
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

  app.get('/metrics', (c) =>
    c.text(metrics.render(boot.snapshot(), opts.metrics), 200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }));

  app.get('/v1/status', auth, async (c) => {
    const hook = boot.snapshot();
    try {
      const status = await opts.promoter.status();
      return c.json({ ...status, hook });
    } catch (err) {
      // The hook's own state is still worth returning when the puller cannot answer.
      log.warn('promoter status failed', { error: err });
      return c.json({ error: `promoter status failed: ${err instanceof Error ? err.message : String(err)}`, hook }, 503);
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
      const n = parsed.value;
      log.info('vrrp notification', { type: n.type, name: n.name, state: n.state, priority: n.priority, boot: boot.phase });
      if (n.state !== 'MASTER') {
        // Nothing is stopped: leaving MASTER (or a fault) must not take running services down; an operator decides.
        if (boot.phase !== 'idle') log.warn('left MASTER after promotion; twins keep running', { state: n.state, boot: boot.phase });
        return c.json({ state: n.state, acknowledged: true });
      }
      const answer = await boot.master();
      return c.json({ state: 'MASTER' as const, ...answer });
    },
  );

  return app;
}
