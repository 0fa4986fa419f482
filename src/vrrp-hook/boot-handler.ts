// `twinlayer pull`'s handler: MASTER runs the once-only boot; BACKUP/FAULT/STOP are acknowledged and logged.
import type { Logger } from '../log/logger.js';
import { Boot } from './boot.js';
import type { Metrics } from '../metrics/index.js';
import { registerBootMetrics } from './metrics.js';
import type { Notification } from './notification.js';
import type { PromoterHookOptions, VrrpHandler } from './types.js';

export class BootHandler implements VrrpHandler {
  readonly #boot: Boot;
  readonly #opts: PromoterHookOptions;
  readonly #log: Logger;

  constructor(opts: PromoterHookOptions, log: Logger) {
    this.#opts = opts;
    this.#log = log;
    this.#boot = new Boot({ promoter: opts.promoter, log, finalizeDeadlineMs: opts.finalizeDeadlineMs, bootTimeoutMs: opts.bootTimeoutMs });
  }

  async notify(n: Notification): Promise<object> {
    this.#log.info('vrrp notification', { type: n.type, name: n.name, state: n.state, priority: n.priority, boot: this.#boot.phase });
    if (n.state !== 'MASTER') {
      // Nothing is stopped: leaving MASTER (or a fault) must not take running services down; an operator decides.
      if (this.#boot.phase !== 'idle') this.#log.warn('left MASTER after promotion; twins keep running', { state: n.state, boot: this.#boot.phase });
      return { state: n.state, acknowledged: true };
    }
    const answer = await this.#boot.master();
    return { state: 'MASTER' as const, ...answer };
  }

  async status(): Promise<object> {
    const hook = this.#boot.snapshot();
    try {
      return { ...(await this.#opts.promoter.status()), hook };
    } catch (err) {
      // The hook's own state is still worth returning when the puller cannot answer.
      this.#log.warn('promoter status failed', { error: err });
      throw Object.assign(new Error(`promoter status failed: ${err instanceof Error ? err.message : String(err)}`), { body: { hook } });
    }
  }

  registerMetrics(metrics: Metrics): void {
    registerBootMetrics(metrics, () => this.#boot.snapshot());
  }
}
