// The seam between the hook and the puller: what a promotion needs, and the reports it hands back.
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/index.js';
import type { Notification } from './notification.js';

// The reports are the puller's own types (the hook may import the puller; never the other way round).
import type { ContainerStart, FinalizeReport, StartReport, StatusReport } from '../puller/index.js';
export type { ContainerFinalize, ContainerStart, ContainerStatus, FinalizeReport, StartReport, StatusReport } from '../puller/index.js';

/** Implemented by the puller; the hook drives a promotion through it and nothing else. */
export interface Promoter {
  /** Pause polling, fetch+stage anything newer than staged within deadlineMs; on S3 failure go on with what is staged and say so. */
  finalize(deadlineMs: number): Promise<FinalizeReport>;
  /** Start every twin in parallel with bounded concurrency; `onStarted` hears each twin's start as it is done. */
  startTwins(onStarted?: (r: ContainerStart) => void): Promise<StartReport>;
  status(): Promise<StatusReport>;
}

/** What acts on the notifications: the once-only boot of `twinlayer pull` (BootHandler), or the agent. */
export interface VrrpHandler {
  /** Acts on one valid notification; the object is the JSON answer (200). */
  notify(n: Notification): Promise<object>;
  /** GET /v1/status; a rejection answers 503 with the reason. */
  status(): Promise<object>;
  /** Registers the handler's own gauges (boot state, role) into the registry GET /metrics exposes; called once. */
  registerMetrics(metrics: Metrics): void;
}

interface HookCommonOptions {
  /** Bearer token every mutating or revealing route requires; undefined disables auth (serveHook allows that on loopback only). */
  token: string | undefined;
  log: Logger;
  /** Largest accepted request body in bytes; default 4096. */
  maxBodyBytes?: number;
  /** The process's registry, exposed at GET /metrics (the units report into it); default a new one. */
  metrics?: Metrics;
}

/** `twinlayer pull`: the once-only promotion through a Promoter. */
export interface PromoterHookOptions extends HookCommonOptions {
  promoter: Promoter;
  /** Passed to Promoter.finalize: how long the last catch-up may take before twins start with what is staged. */
  finalizeDeadlineMs: number;
  /** Bounds the MASTER response from the first MASTER on; the boot itself goes on in the background. */
  bootTimeoutMs: number;
}

/** `twinlayer agent`: every notification goes to the handler. */
export interface HandlerHookOptions extends HookCommonOptions {
  handler: VrrpHandler;
}

export type HookOptions = PromoterHookOptions | HandlerHookOptions;
