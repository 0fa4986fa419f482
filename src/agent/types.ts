// What the agent reports: its role, the generation it writes or follows, and what its last transitions did.
import type { FinalizeReport, StartReport, StatusReport } from '../puller/index.js';
import type { ReplicatorStatus } from '../pusher/index.js';
import type { SignatureStatus } from '../store/index.js';
import type { VrrpState } from './vrrp-intent.js';

export type Role = 'primary' | 'standby' | 'promoting' | 'demoting';

export type ClaimState =
  | { status: 'won'; generation: number }
  /** MASTER while the bucket did not answer: the twins run from what was staged; claimed when it answers. */
  | { status: 'pending'; generation: number; since: string; lastError: string | null }
  | { status: 'lost'; generation: number; holder: string | null }
  /** Resumed as the owner of the newest generation (no new claim). */
  | { status: 'owner'; generation: number };

/** `abandoned`: VRRP left MASTER while finalizing, so nothing was claimed or started. */
export type PromotionOutcome = 'booted' | 'partial' | 'failed' | 'lost-claim' | 'abandoned' | 'already-primary';

export interface PromotionReport {
  outcome: PromotionOutcome;
  startedAt: string;
  ms: number;
  finalize: FinalizeReport | null;
  claim: ClaimState | null;
  start: StartReport | null;
  /** Containers whose restart policy could not be restored. */
  restartPolicyErrors: { name: string; error: string }[];
  errors: string[];
}

export interface DemotionReport {
  reason: string;
  startedAt: string;
  finishedAt: string | null;
  stopped: { name: string; ok: boolean; error?: string }[];
  divergent: { container: string; key: string }[];
  errors: string[];
}

export interface AgentStatus {
  role: Role;
  host: string;
  /** The generation written (primary) or followed (standby). */
  generation: number | null;
  vrrp: { state: VrrpState | null; at: string | null; source: string | null };
  /** Set after a fence or a lost claim while VRRP still says MASTER: no promotion until VRRP leaves MASTER. */
  fenced: string | null;
  claim: ClaimState | null;
  /** This host released its generation (left MASTER with no successor yet). */
  released: boolean;
  /** A release of the newest generation that this host (fenced, VRRP MASTER) refused to take over on, and why: made
   *  at a head that is gone or passed (withdrawn, or put back by a bucket writer), or not by the owner. */
  refusedRelease: string | null;
  /** Promoted containers whose restart policy could not be restored yet (no spec readable); pushing waits. */
  pendingRestartPolicies: string[];
  lastPromotion: PromotionReport | null;
  lastDemotion: DemotionReport | null;
  /** Divergent tails this host saved (since its start). */
  divergent: { container: string; key: string }[];
  /** Per container: the puller's view on a standby, the pusher's on a primary. */
  containers: StatusReport['containers'] | (ReplicatorStatus & { running?: boolean })[];
  lastError: string | null;
  /** Whose signatures are accepted, and the bucket objects refused (unsigned, badly signed, replayed). */
  signatures: SignatureStatus;
  /** This process's memory (MB): what an operator watches for growth over months. */
  memory: ProcessMemory;
}

export interface ProcessMemory {
  rssMb: number;
  heapUsedMb: number;
  heapTotalMb: number;
  /** Memory of Buffers and other objects outside the V8 heap. */
  externalMb: number;
  /** heapUsed + external as the last major GC left them (what the program holds; absent before the first one):
   *  how many major GCs so far, and when the last ended. */
  afterMajorGc?: { count: number; at: string; heapMb: number };
}
