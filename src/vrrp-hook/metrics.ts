// The hook's own metrics (requests by route and code, the boot state of `twinlayer pull`), registered into the
// process's registry, which GET /metrics exposes whole.
import { registerCounter, registerReadGauge, registerStateGauge, type Metrics } from '../metrics/index.js';
import { bootPhases, type BootSnapshot } from './boot.js';
import type { RouteLabel } from './routes.js';

/** Counts one answered request; status codes are a small set, so they may be a label. */
export type RequestCounter = (route: RouteLabel, code: number) => void;

export function registerHookMetrics(metrics: Metrics): RequestCounter {
  const requests = registerCounter(metrics, {
    name: 'twinlayer_hook_requests_total',
    help: 'Requests served by the VRRP hook, by route and status code.',
    labelNames: ['route', 'code'],
  });
  return (route, code) => requests.inc({ route, code: String(code) });
}

/** The boot state of `twinlayer pull` as gauges. */
export function registerBootMetrics(metrics: Metrics, boot: () => BootSnapshot): void {
  registerStateGauge(metrics, {
    name: 'twinlayer_boot_state',
    help: 'Promotion state of this host: 1 for the current state, 0 for the others.',
    label: 'state',
    values: bootPhases,
    current: () => boot().phase,
  });
  registerReadGauge(metrics, {
    name: 'twinlayer_boot_duration_seconds',
    help: 'Duration of the finished promotion (finalize + start) in seconds, by its outcome; no sample before one finished.',
    labelNames: ['outcome'],
    read: () => {
      const result = boot().result;
      return result === null ? [] : [{ labels: { outcome: result.outcome }, value: result.totals.ms / 1000 }];
    },
  });
}
