// The Hono app keepalived's notify script calls, with the process's metrics registry. Built by a factory from its
// dependencies; tested with app.request().
import { Hono } from 'hono';

import { BootHandler } from './boot-handler.js';
import { Metrics } from '../metrics/index.js';
import { registerHookMetrics } from './metrics.js';
import { hookRoutes } from './routes.js';
import type { HookOptions } from './types.js';

/** GET /metrics and /healthz alone, without a token: for `metricsListen`, apart from the hook. */
export function createMetricsApp(metrics: Metrics): Hono {
  const app = new Hono();
  app.get('/healthz', (c) => c.text('ok'));
  app.get('/metrics', async (c) => c.body(await metrics.render(), 200, { 'content-type': metrics.contentType }));
  app.notFound((c) => c.json({ error: 'not found' }, 404));
  return app;
}

export function createHookApp(opts: HookOptions): Hono {
  const log = opts.log.child({ unit: 'vrrp-hook' });
  const handler = 'handler' in opts ? opts.handler : new BootHandler(opts, log);
  const metrics = opts.metrics ?? new Metrics();
  const count = registerHookMetrics(metrics);
  handler.registerMetrics(metrics);
  return hookRoutes({
    token: opts.token,
    handler,
    log,
    maxBodyBytes: opts.maxBodyBytes,
    metrics: { count, render: async () => ({ body: await metrics.render(), contentType: metrics.contentType }) },
  });
}
