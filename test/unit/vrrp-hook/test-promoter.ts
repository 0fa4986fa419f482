// A Promoter for the hook's tests: records every call and lets a test hold finalize/startTwins open with a gate.
// It stands in for the puller (the seam), not for the hook, which is the subject under test.
import type { ContainerStart, FinalizeReport, Promoter, StartReport, StatusReport } from '../../../src/vrrp-hook/index.js';

export interface Gate {
  promise: Promise<void>;
  open: () => void;
}

export function gate(): Gate {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => { open = resolve; });
  return { promise, open };
}

export function reachedSignal(): { promise: Promise<void>; reach: () => void } {
  const g = gate();
  return { promise: g.promise, reach: g.open };
}

export class TestPromoter implements Promoter {
  readonly calls: string[] = [];
  finalizeReport: FinalizeReport = {
    ms: 12,
    bucketReachable: true,
    timedOut: false,
    containers: [{ name: 'dns', stagedSeq: 7, latestSeq: 7 }, { name: 'proxy', stagedSeq: 3, latestSeq: 3 }],
  };
  startReport: StartReport = {
    ms: 150,
    containers: [{ name: 'dns', ok: true, ms: 140 }, { name: 'proxy', ok: true, ms: 150 }],
  };
  role: StatusReport['role'] = 'standby';
  finalizeError: Error | undefined;
  startError: Error | undefined;
  statusError: Error | undefined;
  /** When set, finalize / startTwins wait for it to open. */
  finalizeGate: Gate | undefined;
  startGate: Gate | undefined;
  /** Reported through startTwins' onStarted before it waits at startGate: the twins a slow boot started so far. */
  startedBeforeGate: ContainerStart[] = [];
  readonly finalizeEntered = reachedSignal();
  readonly startEntered = reachedSignal();
  readonly startReturned = reachedSignal();

  count(name: string): number {
    return this.calls.filter((c) => c === name || c.startsWith(`${name}:`)).length;
  }

  /** Calls other than status(), which the hook and the status route read freely. */
  sideEffects(): string[] {
    return this.calls.filter((c) => c !== 'status');
  }

  async finalize(deadlineMs: number): Promise<FinalizeReport> {
    this.calls.push(`finalize:${deadlineMs}`);
    this.finalizeEntered.reach();
    if (this.finalizeGate !== undefined) await this.finalizeGate.promise;
    if (this.finalizeError !== undefined) throw this.finalizeError;
    return this.finalizeReport;
  }

  async startTwins(onStarted?: (r: ContainerStart) => void): Promise<StartReport> {
    this.calls.push('startTwins');
    this.startEntered.reach();
    for (const r of this.startedBeforeGate) onStarted?.(r);
    try {
      if (this.startGate !== undefined) await this.startGate.promise;
      if (this.startError !== undefined) throw this.startError;
      return this.startReport;
    } finally {
      this.startReturned.reach();
    }
  }

  status(): Promise<StatusReport> {
    this.calls.push('status');
    if (this.statusError !== undefined) return Promise.reject(this.statusError);
    return Promise.resolve({
      role: this.role,
      generation: 4,
      containers: [{ name: 'dns', latestSeq: 7, stagedSeq: 7, lag: 0, twin: 'stopped' }],
      lastPollAt: '2025-01-01T00:00:00.000Z',
      lastError: null,
      signatures: { required: true, signer: null, trusted: [{ keyId: '0123456789abcdef', host: 'primary' }], refused: { total: 0, alert: null, recent: [] } },
    });
  }
}
