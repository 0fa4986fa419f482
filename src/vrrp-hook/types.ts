// The seam between the hook and the puller: what a promotion needs, and the reports it hands back.
import type { Logger } from '../log/logger.js';

export interface ContainerFinalize { name: string; stagedSeq: number; latestSeq: number | null; error?: string }
export interface FinalizeReport { ms: number; bucketReachable: boolean; timedOut: boolean; containers: ContainerFinalize[] }
export interface ContainerStart { name: string; ok: boolean; ms: number; error?: string }
export interface StartReport { ms: number; containers: ContainerStart[] }
export interface ContainerStatus {
  name: string;
  latestSeq: number | null;
  stagedSeq: number;
  lag: number | null;
  twin: 'absent' | 'stopped' | 'running' | 'refused';
  reason?: string;
}
export interface StatusReport {
  role: 'standby' | 'promoting' | 'master';
  generation: number | null;
  containers: ContainerStatus[];
  lastPollAt: string | null;
  lastError: string | null;
}

/** Implemented by the puller; the hook drives a promotion through it and nothing else. */
export interface Promoter {
  /** Pause polling, fetch+stage anything newer than staged within deadlineMs; on S3 failure go on with what is staged and say so. */
  finalize(deadlineMs: number): Promise<FinalizeReport>;
  /** Start every twin in parallel with bounded concurrency. */
  startTwins(): Promise<StartReport>;
  status(): Promise<StatusReport>;
}

export interface HookOptions {
  /** Bearer token every mutating or revealing route requires; undefined disables auth (serveHook allows that on loopback only). */
  token: string | undefined;
  promoter: Promoter;
  log: Logger;
  /** Passed to Promoter.finalize: how long the last catch-up may take before twins start with what is staged. */
  finalizeDeadlineMs: number;
  /** Bounds the MASTER response from the first MASTER on; the boot itself goes on in the background. */
  bootTimeoutMs: number;
  /** Largest accepted request body in bytes; default 4096. */
  maxBodyBytes?: number;
  /** Extra Prometheus text lines appended to GET /metrics (the puller's own gauges). */
  metrics?: () => string;
}
