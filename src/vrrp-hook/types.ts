// The seam between the hook and the puller: what a promotion needs, and the reports it hands back.
import type { Logger } from '../log/logger.js';

// The reports are the puller's own types (the hook may import the puller; never the other way round).
import type { FinalizeReport, StartReport, StatusReport } from '../puller/index.js';
export type { ContainerFinalize, ContainerStart, ContainerStatus, FinalizeReport, StartReport, StatusReport } from '../puller/index.js';

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
