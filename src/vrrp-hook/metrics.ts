// Prometheus text exposition of the hook's own counters and the boot state.
import { bootPhases, type BootSnapshot } from './boot.js';

/** Routes are labelled by their pattern, never by the raw path, so label cardinality stays bounded. */
export const knownRoutes = ['/v1/vrrp', '/v1/status', '/healthz', '/metrics'] as const;
export type RouteLabel = (typeof knownRoutes)[number] | 'other';

export function routeLabel(path: string): RouteLabel {
  return (knownRoutes as readonly string[]).includes(path) ? (path as RouteLabel) : 'other';
}

export class HookMetrics {
  readonly #requests = new Map<string, number>();

  countRequest(route: RouteLabel, code: number): void {
    const key = `route="${route}",code="${code}"`;
    this.#requests.set(key, (this.#requests.get(key) ?? 0) + 1);
  }

  /** The request counters, then the handler's lines, then `extra`'s. */
  render(handlerLines: string, extra?: () => string): string {
    const lines: string[] = [
      '# HELP twinlayer_hook_requests_total Requests served by the VRRP hook, by route and status code.',
      '# TYPE twinlayer_hook_requests_total counter',
    ];
    for (const [labels, n] of [...this.#requests].sort(([a], [b]) => a.localeCompare(b))) {
      lines.push(`twinlayer_hook_requests_total{${labels}} ${n}`);
    }
    let text = lines.join('\n') + '\n';
    if (handlerLines.length > 0) text += handlerLines.endsWith('\n') ? handlerLines : handlerLines + '\n';
    if (extra !== undefined) {
      const more = extra();
      if (more.length > 0) text += more.endsWith('\n') ? more : more + '\n';
    }
    return text;
  }
}

/** The boot state of `twinlayer pull` as gauges. */
export function renderBootMetrics(boot: BootSnapshot): string {
  const lines: string[] = [
    '# HELP twinlayer_boot_state Promotion state of this host: 1 for the current state, 0 for the others.',
    '# TYPE twinlayer_boot_state gauge',
  ];
  for (const phase of bootPhases) lines.push(`twinlayer_boot_state{state="${phase}"} ${boot.phase === phase ? 1 : 0}`);
  lines.push(
    '# HELP twinlayer_boot_duration_ms Duration of the finished promotion (finalize + start) in milliseconds.',
    '# TYPE twinlayer_boot_duration_ms gauge',
  );
  if (boot.result !== null) lines.push(`twinlayer_boot_duration_ms ${boot.result.totals.ms}`);
  return lines.join('\n') + '\n';
}
