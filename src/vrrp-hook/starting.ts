// The hook's handler while the daemon behind it starts. The hook listens before the daemon's heavy modules load and
// before its first bucket and engine round trips, so /healthz and keepalived's calls are answered from the process's
// first moments. A notification that comes before the daemon is ready is held, in arrival order, and handed to the
// daemon's handler once it is ready: none is lost, and none is answered as done before the daemon acted on it.
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/index.js';
import { HookError } from './errors.js';
import type { Notification } from './notification.js';
import type { VrrpHandler } from './types.js';

/** What the hook answers (503, with `body`) when the daemon cannot act on a call yet, or its start failed. */
export class NotReadyError extends HookError {
  readonly body: { phase: 'starting' | 'failed'; since: string; held?: boolean; state?: string };
  constructor(message: string, body: NotReadyError['body']) {
    super('HOOK_NOT_READY', message, { phase: body.phase });
    this.body = body;
  }
}

export interface StartingOptions {
  log: Logger;
  /** Longest a call waits for the daemon to be ready before it is answered 503 (held notifications are still acted
   *  on once it is): the same bound as a MASTER answer's, so keepalived's notify call ends in time either way. */
  bootTimeoutMs: number;
}

export class StartingHandler implements VrrpHandler {
  readonly #o: StartingOptions;
  readonly #since = new Date().toISOString();
  readonly #ready: Promise<VrrpHandler>;
  #resolve!: (h: VrrpHandler) => void;
  #reject!: (err: Error) => void;
  #handler: VrrpHandler | null = null;
  #failure: Error | null = null;
  #metrics: Metrics | null = null;
  /** Notifications held until the daemon is ready (for the log line that hands them over). */
  #held = 0;

  constructor(opts: StartingOptions) {
    this.#o = opts;
    this.#ready = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // A start that fails with nothing held is no unhandled rejection.
    this.#ready.catch(() => undefined);
  }

  /** Notifications held so far while starting. */
  get held(): number {
    return this.#held;
  }

  get phase(): 'starting' | 'ready' | 'failed' {
    return this.#handler !== null ? 'ready' : this.#failure !== null ? 'failed' : 'starting';
  }

  /** The daemon is open: every held notification goes to `handler` now, in the order they came, and every later
   *  call goes straight to it. */
  ready(handler: VrrpHandler): void {
    if (this.phase !== 'starting') throw new Error(`the hook's handler is already ${this.phase}`);
    if (this.#metrics !== null) handler.registerMetrics(this.#metrics);
    if (this.#held > 0) this.#o.log.info('daemon ready: handing over the notifications held while starting', { held: this.#held });
    this.#handler = handler;
    this.#resolve(handler);
  }

  /** The daemon did not start (the process exits): held and later calls are answered 503 with the reason. */
  failed(err: unknown): void {
    if (this.phase !== 'starting') return;
    this.#failure = err instanceof Error ? err : new Error(String(err));
    this.#reject(this.#failure);
  }

  async notify(n: Notification): Promise<object> {
    if (this.#handler !== null) return this.#handler.notify(n);
    if (this.#failure !== null) throw this.#failedError(n);
    this.#held++;
    this.#o.log.info('vrrp notification while starting: held until the daemon is ready', { type: n.type, name: n.name, state: n.state, priority: n.priority, at: n.at });
    // Chained now, so held notifications reach the daemon in the order they came, whether or not their callers
    // are still waiting when it is ready.
    const acted = this.#ready.then((h) => h.notify(n));
    acted.catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), Math.max(0, this.#o.bootTimeoutMs)); });
    try {
      const first = await Promise.race([acted, timedOut]);
      if (first !== 'timeout') return first;
    } catch (err) {
      if (err === this.#failure) throw this.#failedError(n);
      throw err;
    } finally {
      clearTimeout(timer);
    }
    if (this.#handler !== null) {
      // Handed over, but the daemon's own answer (bounded by it from when it got the call) would come too late for
      // keepalived's notify call: what a slow promotion answers, with how long the call was held.
      return { state: n.state, timedOut: true, heldWhileStarting: true, note: 'acted on since the daemon became ready; GET /v1/status shows the outcome' };
    }
    throw new NotReadyError(`still starting after ${this.#o.bootTimeoutMs} ms: the ${n.state} notification is held and acted on once the daemon is ready`, { phase: 'starting', since: this.#since, held: true, state: n.state });
  }

  #failedError(n: Notification): NotReadyError {
    return new NotReadyError(`the daemon did not start, so ${n.state} was not acted on: ${this.#failure?.message ?? 'unknown error'}`, { phase: 'failed', since: this.#since, held: false, state: n.state });
  }

  async status(): Promise<object> {
    if (this.#handler !== null) return this.#handler.status();
    if (this.#failure !== null) throw new NotReadyError(`the daemon did not start: ${this.#failure.message}`, { phase: 'failed', since: this.#since });
    return Promise.reject(new NotReadyError('starting: the daemon is not ready yet', { phase: 'starting', since: this.#since }));
  }

  registerMetrics(metrics: Metrics): void {
    this.#metrics = metrics;
    this.#handler?.registerMetrics(metrics);
  }
}
