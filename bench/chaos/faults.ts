// The time line of faults as they happened, and how long after each the system had converged again. A fault
// that ends while others are still active cannot converge before they end too: the time that other faults
// overlap is not held against it (`attributableMs`).
import type { FaultKind } from './plan.js';

export interface FaultInterval {
  id: number;
  kind: FaultKind;
  /** What exactly (host, count, duration), for the report. */
  detail: string;
  /** ms since the soak started. */
  start: number;
  end: number | null;
}

export interface Convergence {
  faultId: number;
  kind: FaultKind;
  detail: string;
  /** Fault over → its probe staged on the standby (ms). */
  ms: number;
  /** The same less the time other faults that block replication (kills, outages, a full disk) were active. */
  attributableMs: number;
}

/** Kinds during which replication cannot make progress, whoever is waiting. */
const BLOCKING: ReadonlySet<FaultKind> = new Set(['kill-pusher', 'kill-puller', 'kill-engine-primary', 'kill-engine-standby', 'outage', 'disk-full', 'failover-kill', 'failover-keepalived']);

export class FaultLog {
  readonly intervals: FaultInterval[] = [];
  #next = 1;
  readonly #now: () => number;

  constructor(now: () => number) {
    this.#now = now;
  }

  begin(kind: FaultKind, detail: string, instant = false): FaultInterval {
    const t = this.#now();
    const f: FaultInterval = { id: this.#next++, kind, detail, start: t, end: instant ? t : null };
    this.intervals.push(f);
    return f;
  }

  end(f: FaultInterval): void {
    f.end ??= this.#now();
  }

  /** True while a blocking fault other than `except` is active. */
  blocked(except?: number): boolean {
    return this.intervals.some((f) => f.id !== except && f.end === null && BLOCKING.has(f.kind));
  }

  /** ms of [from, to) covered by blocking faults other than `except` (union of their intervals). */
  blockedMs(from: number, to: number, except?: number): number {
    const spans = this.intervals
      .filter((f) => f.id !== except && BLOCKING.has(f.kind))
      .map((f) => [Math.max(from, f.start), Math.min(to, f.end ?? to)] as const)
      .filter(([a, b]) => b > a)
      .sort((x, y) => x[0] - y[0]);
    let total = 0;
    let cur: [number, number] | null = null;
    for (const [a, b] of spans) {
      if (cur === null || a > cur[1]) {
        if (cur !== null) total += cur[1] - cur[0];
        cur = [a, b];
      } else {
        cur[1] = Math.max(cur[1], b);
      }
    }
    if (cur !== null) total += cur[1] - cur[0];
    return total;
  }
}
