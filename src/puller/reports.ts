// What the puller reports about a promotion and its state. The vrrp-hook serves these as they are.
import type { SignatureStatus } from '../store/index.js';

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
  /** The commit whose changeset was refused (hostile, or beyond the limits): neither fetched nor validated again;
   *  the container waits for a full checkpoint. */
  refusedCommit?: { seq: number; digest: string; reason: string };
  /** What this host lacks for the twin, each since when: the twin is held (an existing one kept with what is staged
   *  into it, none created) and checked again every poll. */
  hostProblems?: Array<{ problem: string; since: string; detail?: string }>;
}
export interface StatusReport {
  role: 'standby' | 'promoting' | 'master';
  generation: number | null;
  containers: ContainerStatus[];
  lastPollAt: string | null;
  lastError: string | null;
  /** Whose signatures are accepted, and the bucket objects refused (unsigned, badly signed, replayed). */
  signatures: SignatureStatus;
}
