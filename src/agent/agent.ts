// One agent per host: the primary (runs and pushes its protected containers) or the standby (keeps stopped twins
// current), switching by itself. keepalived decides who serves (the latest VRRP state this host was told), the
// bucket decides who replicates (the owner of the newest generation). Every transition, the first decision at start
// included, runs in one serial loop, so nothing runs twice in parallel and a burst of notifications converges on
// the latest state.
import { join } from 'node:path';
import PQueue from 'p-queue';
import { NO_RESTART, type ProtectedContainer, type StartResult, type TwinSpec } from '../docker/index.js';
import type { Logger } from '../log/logger.js';
import { chunkIndexDirOf, Puller, type PullerOptions, type StartReport } from '../puller/index.js';
import { Pusher, type PusherOptions } from '../pusher/index.js';
import { acquireStateLock, type StateLock } from '../state/lock.js';
import { recoverHead, type Generation } from '../store/index.js';
import { messageOf as message, within } from './bounded.js';
import { claimGeneration, type ClaimBasis } from './claims.js';
import { saveDivergentTail } from './divergent.js';
import { Fence } from './fence.js';
import { newestOwnership, ownershipOf, successorOf, type Ownership } from './ownership.js';
import { processMemory, watchMajorGc } from './process-memory.js';
import { currentRelease, releaseGeneration, withdrawRelease } from './release.js';
import { RestartPolicies } from './restart-policies.js';
import { RoleFileStore } from './role-file.js';
import type { AgentStatus, ClaimState, DemotionReport, PromotionReport, Role } from './types.js';
import { readVrrpStateFile, VrrpIntent, type Offer, type VrrpEvent, type VrrpState } from './vrrp-intent.js';

/** The agent builds the primary's pusher and the standby's puller from these, so they are those units' own keys;
 *  what a role decides (generation, twins, fence) is the agent's to set. */
type PushSettings = Omit<PusherOptions, 'position' | 'includeTwins' | 'beforePublish' | 'discoverIntervalMs'>;
type PullSettings = Pick<PullerOptions, 'pollIntervalMs' | 'downloadConcurrency' | 'startConcurrency' | 'twinPolicy' | 'trustUnsignedSpecs'>;

export interface AgentOptions extends PushSettings, PullSettings {
  finalizeDeadlineMs: number;
  /** Bounds a MASTER answer; the promotion goes on in the background. */
  bootTimeoutMs: number;
  /** notify.sh's record of the latest VRRP state, read at start; undefined: none. */
  vrrpStateFile: string | undefined;
  /** How often a primary looks for a successor of its generation (at most 1000). */
  fenceIntervalMs: number;
  /** A primary told BACKUP/FAULT waits this long for a MASTER that cancels it before it demotes (VRRP flaps). */
  backupSettleMs: number;
  /** docker stop's grace period when demoting (then SIGKILL). */
  stopTimeoutSeconds: number;
  /** How long a decision waits for the bucket (at start, for a claim) before going on without it. Default 1000. */
  bucketDecisionMs?: number;
  /** First retry interval of work that waits for the bucket; doubles up to 10 s. Default 500. */
  retryIntervalMs?: number;
  /** How often a standby checks that it runs nothing it must not (and whether a fenced MASTER may take over). */
  standbyCheckMs?: number;
}

export interface NotifyAnswer {
  state: VrrpState;
  offer: Offer;
  role: Role;
  generation: number | null;
  /** For MASTER: the promotion this notification led to or joined (null when none ran). */
  promotion: PromotionReport | null;
  /** True when the answer was given before the transition finished (bootTimeoutMs). */
  timedOut: boolean;
}

const MAX_RETRY_MS = 10_000;

export class Agent {
  readonly #o: AgentOptions;
  readonly #log: Logger;
  readonly #intent = new VrrpIntent();
  readonly #roleFile: RoleFileStore;
  readonly #policies: RestartPolicies;
  #initialized = false;
  #role: Role = 'standby';
  /** Why this host must not promote although VRRP says MASTER (fenced, lost claim); cleared when VRRP leaves MASTER
   *  or when the owner of the newest generation releases it. */
  #fenceReason: string | null = null;
  /** When the fence was set, in notify.sh's stamps (ns since the epoch, this host's clock). */
  #fencedAtNs: bigint | null = null;
  get #fenced(): string | null {
    return this.#fenceReason;
  }
  set #fenced(reason: string | null) {
    if (reason === null) this.#fencedAtNs = null;
    else if (this.#fenceReason === null) this.#fencedAtNs = BigInt(Date.now()) * 1_000_000n;
    this.#fenceReason = reason;
  }
  #puller: Puller | null = null;
  /** A puller being stopped in the background (its last poll may wait on an unreachable bucket). */
  #pullerStopping: Promise<void> | null = null;
  #pusher: Pusher | null = null;
  #fence: Fence | null = null;
  /** The generation this host writes (primary) or last wrote (demoting). */
  #owned: Generation | null = null;
  /** The owned generation was taken from this host's own record while the bucket was down: checked before pushing. */
  #ownerUnverified = false;
  #claim: ClaimState | null = null;
  #claimBasis: ClaimBasis | null = null;
  /** This host released its generation (left MASTER with no successor); withdrawn when it resumes. */
  #released = false;
  /** Demoting because VRRP said so (not fenced): release the generation while no successor exists. */
  #releaseWhenAlone = false;
  /** Protected containers that ran on this host since the last demotion finished: they may hold a tail. */
  readonly #ranHere = new Set<string>();
  /** Why the release of the newest generation was refused (stale: withdrawn by its owner, or put back), for status. */
  #refusedRelease: string | null = null;
  /** Resumed while the bucket was down: a release of ours may still be there; withdrawn before pushing. */
  #withdrawRelease = false;
  #lastPromotion: PromotionReport | null = null;
  #lastDemotion: DemotionReport | null = null;
  #divergent: { container: string; key: string }[] = [];
  /** Tails saved, by container and successor generation: a retried demotion does not upload them again. */
  readonly #tailsSaved = new Set<string>();
  #lastError: string | null = null;
  #lock: StateLock | null = null;
  #loop: Promise<void> | null = null;
  #again = false;
  #timer: NodeJS.Timeout | null = null;
  #retryMs: number;
  #stopped = false;
  /** A primary whose pusher could not start yet (bucket down, claim pending, policies unknown). */
  #pushPending = false;

  constructor(opts: AgentOptions) {
    if (opts.fenceIntervalMs > 1000) throw new RangeError(`Expected \`fenceIntervalMs\` to be at most 1000, got ${opts.fenceIntervalMs}`);
    this.#o = opts;
    this.#log = opts.log.child({ unit: 'agent' });
    this.#roleFile = new RoleFileStore(opts.stateDir, opts.group);
    this.#policies = new RestartPolicies({ runtime: opts.runtime, bucket: opts.bucket, log: this.#log, askMs: this.#decisionMs });
    this.#retryMs = opts.retryIntervalMs ?? 500;
  }

  get role(): Role {
    return this.#role;
  }

  get #decisionMs(): number {
    return this.#o.bucketDecisionMs ?? 1000;
  }

  /** Takes the agent's lock, checks the engine, reads the VRRP state notify.sh recorded; starts nothing yet. */
  async open(): Promise<void> {
    watchMajorGc();
    this.#lock = await acquireStateLock(join(this.#o.stateDir, 'agent'), `agent-${this.#o.group}`);
    try {
      await this.#o.runtime.checkEngine();
      if (this.#o.vrrpStateFile !== undefined) {
        const recorded = await readVrrpStateFile(this.#o.vrrpStateFile);
        if (recorded !== null) {
          this.#intent.offer(recorded);
          this.#log.info('VRRP state from the state file', { state: recorded.state, file: this.#o.vrrpStateFile });
        }
      }
    } catch (err) {
      await this.#lock.release();
      this.#lock = null;
      throw err;
    }
  }

  /** Decides the first role (in the loop, like every transition) and converges; resolves when that is done. */
  async start(): Promise<void> {
    this.#kick();
    await this.#settled();
  }

  // ---- notifications -------------------------------------------------------------------------------------------

  /** One VRRP notification from the hook. MASTER waits (bounded) for the promotion; the others answer at once. */
  async notify(n: { state: VrrpState; at?: string | undefined }): Promise<NotifyAnswer> {
    const event: VrrpEvent = { state: n.state, at: n.at === undefined ? null : BigInt(n.at), receivedAt: Date.now(), source: 'hook' };
    const previous = this.#intent.state;
    const offer = this.#intent.offer(event);
    this.#log.info('vrrp notification', { state: n.state, at: n.at, offer, role: this.#role });
    if (offer === 'accepted' && n.state !== 'MASTER' && this.#fenced !== null) {
      this.#log.info('VRRP left MASTER; a later MASTER may promote this host again', { fenced: this.#fenced });
      this.#fenced = null;
    } else if (offer === 'accepted' && n.state === 'MASTER' && previous !== 'MASTER' && this.#fenced !== null && (event.at === null || this.#fencedAtNs === null || event.at > this.#fencedAtNs)) {
      // A new election, not the MASTER the fence was about: the fence holds a MASTER that predates it down. It can
      // be set after the BACKUP that ended that MASTER was taken (a keepalived restarted as BACKUP before this host
      // saw the newer generation), and nothing would end it then: the owner's host dying releases nothing, so this
      // host would never take over. A MASTER stamped before the fence (a late call of a flap) is not one: as if it
      // had come in time, it stays down. A live owner is fenced in turn by this host's claim.
      this.#log.info('VRRP elected this host MASTER after it was fenced: promoting again', { fenced: this.#fenced, previous });
      this.#fenced = null;
    }
    const before = this.#lastPromotion;
    if (offer === 'accepted') this.#kick();
    if (n.state !== 'MASTER') return this.#answer(n.state, offer, null, false);
    const settled = await within(this.#settled(), this.#o.bootTimeoutMs);
    const promotion = this.#lastPromotion !== before ? this.#lastPromotion : null;
    return this.#answer(n.state, offer, promotion ?? (this.#role === 'primary' ? this.#lastPromotion : null), !settled.done);
  }

  #answer(state: VrrpState, offer: Offer, promotion: PromotionReport | null, timedOut: boolean): NotifyAnswer {
    return { state, offer, role: this.#role, generation: this.#generation(), promotion, timedOut };
  }

  #generation(): number | null {
    return this.#role === 'standby' ? this.#followed() : (this.#owned ?? this.#claim?.generation ?? null);
  }

  #followed(): number | null {
    try {
      return this.#puller?.position().generation || null;
    } catch {
      return null;
    }
  }

  /** A generation known to exist, to probe the newest from (no listing of every generation). A pending claim's
   *  generation may never exist: its basis does. */
  #knownGeneration(): number {
    const claimed = this.#claim !== null && this.#claim.status !== 'pending' ? this.#claim.generation : 0;
    return Math.max(this.#owned ?? 0, this.#followed() ?? 0, this.#claimBasis?.generation ?? 0, claimed);
  }

  // ---- the loop ------------------------------------------------------------------------------------------------

  #kick(): void {
    if (this.#stopped) return;
    if (this.#loop !== null) {
      this.#again = true;
      return;
    }
    this.#loop = this.#runLoop().finally(() => {
      this.#loop = null;
      if (this.#again) this.#kick();
    });
  }

  async #runLoop(): Promise<void> {
    // Bounded: each step is one transition; a handful settles any sequence of notifications.
    for (let i = 0; i < 16 && !this.#stopped; i++) {
      this.#again = false;
      let moved = false;
      try {
        moved = await this.#step();
      } catch (err) {
        this.#lastError = message(err);
        this.#log.error('transition failed; trying again', { role: this.#role, retryMs: this.#retryMs, err });
        this.#retryLater();
      }
      if (!moved && !this.#again) return;
    }
  }

  /** Resolves when no transition runs (a MASTER answer waits for this). */
  async #settled(): Promise<void> {
    for (let i = 0; i < 64 && this.#loop !== null; i++) await this.#loop;
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#kick();
    }, ms);
  }

  /** Work that waits for the bucket retries with backoff (doubling to 10 s), reset by success. */
  #retryLater(): void {
    this.#schedule(this.#retryMs);
    this.#retryMs = Math.min(MAX_RETRY_MS, this.#retryMs * 2);
  }

  #succeeded(): void {
    this.#retryMs = this.#o.retryIntervalMs ?? 500;
    this.#lastError = null;
  }

  #wantsPrimary(): boolean {
    return this.#intent.state === 'MASTER' && this.#fenced === null;
  }

  /** VRRP said this host is not MASTER (and the settle time of a flap has passed). Unknown is not "leave". */
  #toldToLeave(): { leave: boolean; waitMs: number } {
    const latest = this.#intent.latest;
    if (latest === null || latest.state === 'MASTER') return { leave: false, waitMs: 0 };
    const waitMs = latest.receivedAt + this.#o.backupSettleMs - Date.now();
    return waitMs > 0 ? { leave: false, waitMs } : { leave: true, waitMs: 0 };
  }

  /** One transition; true when the role moved (the loop looks again). */
  async #step(): Promise<boolean> {
    if (!this.#initialized) {
      await this.#decideInitialRole();
      this.#initialized = true;
      return true;
    }
    switch (this.#role) {
      case 'standby':
        if (this.#wantsPrimary()) {
          await this.#promote();
          return true;
        }
        return this.#checkStandby();
      case 'primary': {
        const fencedBy = this.#fence?.fencedBy ?? null;
        if (fencedBy !== null && this.#fenced === null) this.#fenced = `host ${fencedBy.owner ?? '(unknown)'} owns generation ${fencedBy.generation}`;
        if (this.#fenced !== null) {
          await this.#stopServing(this.#fenced, { release: false });
          return true;
        }
        const { leave, waitMs } = this.#toldToLeave();
        if (leave) {
          await this.#stopServing(`VRRP ${this.#intent.state ?? ''}`, { release: true });
          return true;
        }
        if (waitMs > 0) this.#schedule(waitMs);
        else if (this.#pushPending) await this.#startPushing();
        return false;
      }
      case 'demoting':
        return this.#stepDemoting();
      case 'promoting':
        return false;
    }
  }

  async #askBucket<T>(ask: () => Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: string }> {
    try {
      const r = await within(ask(), this.#decisionMs);
      return r.done ? { ok: true, value: r.value } : { ok: false, error: `the bucket did not answer within ${this.#decisionMs} ms` };
    } catch (err) {
      return { ok: false, error: message(err) };
    }
  }

  // ---- start-up ------------------------------------------------------------------------------------------------

  async #decideInitialRole(): Promise<void> {
    const saved = await this.#roleFile.load();
    const vrrp = this.#intent.state;
    const toldBackup = vrrp !== null && vrrp !== 'MASTER';
    const wasPrimary = saved?.role === 'primary' && saved.generation > 0;
    // A former primary told it is not MASTER stops its containers first and asks the bucket after (within 2 s of
    // its start); Docker may have restarted them with their restart policies.
    if (toldBackup && wasPrimary) {
      this.#owned = saved.generation as Generation;
      await this.#stopServing(`started while VRRP says ${vrrp}`, { release: true });
      return;
    }
    const newest = await this.#askBucket(() => newestOwnership(this.#o.bucket, saved?.generation ?? 0));
    if (!newest.ok) {
      this.#log.warn('the bucket did not answer at start; deciding from this host\'s own record', { error: newest.error, saved: saved?.role ?? null, vrrp });
      if (wasPrimary && !toldBackup) {
        this.#ownerUnverified = true;
        await this.#resumePrimary(saved.generation as Generation, 'restarted as the primary (bucket unreachable; ownership checked before pushing)', false);
      } else {
        await this.#becomeStandby('start: the bucket is unreachable and this host was not the primary');
      }
      return;
    }
    const own = newest.value;
    if (own !== null && own.owner === this.#o.hostId) {
      if (toldBackup) {
        this.#owned = own.generation;
        await this.#stopServing(`started while VRRP says ${vrrp}`, { release: true });
      } else {
        await this.#resumePrimary(own.generation, 'restarted as the owner of the newest generation', true);
      }
      return;
    }
    if (own !== null && own.owner !== null) this.#fenceSupersededMaster(own);
    if (own !== null && own.owner !== null && wasPrimary) {
      // Another host took over while this one was away: whatever Docker restarted here is stale.
      this.#owned = saved.generation as Generation;
      await this.#stopServing(`host ${own.owner} owns generation ${own.generation}`, { release: false });
      return;
    }
    // A standby (or a new host): its twins are current or will be; anything that must not run here is found by
    // the standby check, which saves tails for those containers only.
    await this.#becomeStandby('start');
  }

  /** A MASTER read from the state file that is older than another host's claim of the newest generation was
   *  superseded while this agent was down (its keepalived died with it and left the file, or a split brain the other
   *  host won): promoting on it would take the generation from the host that serves. This host stays down, as a
   *  fenced one does, until VRRP tells it something newer (keepalived starting again says BACKUP first). A MASTER
   *  stamped after the claim is news (keepalived made this host MASTER while the agent was down): it promotes. */
  #fenceSupersededMaster(own: Ownership): void {
    const latest = this.#intent.latest;
    if (latest?.source !== 'state-file' || latest.state !== 'MASTER' || own.claim === null) return;
    const claimedAt = Date.parse(own.claim.claimedAt);
    const masterAt = latest.at === null ? null : Number(latest.at / 1_000_000n);
    if (masterAt !== null && !(Number.isFinite(claimedAt) && masterAt < claimedAt)) return;
    this.#fenced = `the VRRP state file says MASTER${masterAt === null ? '' : ` since ${new Date(masterAt).toISOString()}`}, before host ${own.owner ?? '?'} claimed generation ${own.generation} at ${own.claim.claimedAt}`;
    this.#log.warn('MASTER in the VRRP state file is older than the newest claim: not promoting on it', { fenced: this.#fenced });
  }

  // ---- standby -------------------------------------------------------------------------------------------------

  async #becomeStandby(why: string): Promise<void> {
    if (this.#puller === null) {
      if (this.#pullerStopping !== null) await this.#pullerStopping;
      this.#pullerStopping = null;
      const puller = new Puller({
        runtime: this.#o.runtime,
        bucket: this.#o.bucket,
        log: this.#o.log.child({ unit: 'puller' }),
        group: this.#o.group,
        stateDir: this.#o.stateDir,
        pollIntervalMs: this.#o.pollIntervalMs,
        downloadConcurrency: this.#o.downloadConcurrency,
        startConcurrency: this.#o.startConcurrency,
        ...(this.#o.twinPolicy === undefined ? {} : { twinPolicy: this.#o.twinPolicy }),
        ...(this.#o.trustUnsignedSpecs === undefined ? {} : { trustUnsignedSpecs: this.#o.trustUnsignedSpecs }),
        metrics: this.#o.metrics,
      });
      await puller.open();
      puller.start();
      this.#puller = puller;
    }
    this.#role = 'standby';
    this.#owned = null;
    this.#ownerUnverified = false;
    this.#claim = null;
    this.#released = false;
    await this.#roleFile.save('standby', this.#followed() ?? 0);
    this.#succeeded();
    this.#log.info('standby', { why, fenced: this.#fenced });
    this.#schedule(this.#o.standbyCheckMs ?? 2000);
  }

  /**
   * Every few seconds on a standby: it runs no protected container and keeps none that is not a twin once another
   * host owns the newest generation (a host whose Docker restarted stale containers, the same service started on
   * both hosts); and a host that stood down while VRRP still calls it MASTER takes over when the owner released.
   */
  async #checkStandby(): Promise<boolean> {
    this.#schedule(this.#o.standbyCheckMs ?? 2000);
    if (this.#fenced !== null && this.#intent.state === 'MASTER') {
      const released = await this.#askBucket(async () => {
        const newest = await this.#o.bucket.newestGenerationFrom(this.#knownGeneration() as Generation);
        return newest === 0 ? null : currentRelease(this.#o.bucket, newest);
      });
      if (released.ok && released.value?.status === 'valid') {
        this.#log.warn('the owner of the newest generation released it while VRRP calls this host MASTER: taking over', { release: released.value.release, fenced: this.#fenced });
        this.#fenced = null;
        this.#refusedRelease = null;
        return true;
      }
      if (released.ok && released.value?.status === 'stale') {
        const why = `release of generation ${released.value.release.generation} refused: ${released.value.reason}`;
        if (this.#refusedRelease !== why) this.#log.error('a release that no longer holds is refused; this host stays down', { release: released.value.release, reason: released.value.reason });
        this.#refusedRelease = why;
      } else if (released.ok) {
        this.#refusedRelease = null;
      }
    }
    const containers = await this.#o.runtime.listProtected(this.#o.label, { includeTwins: true });
    const stale = containers.filter((c) => c.running || !c.isTwin);
    if (stale.length === 0) return false;
    const newest = await this.#askBucket(() => newestOwnership(this.#o.bucket, this.#knownGeneration()));
    if (!newest.ok || newest.value === null || newest.value.owner === null || newest.value.owner === this.#o.hostId) return false;
    const successor = newest.value;
    const running = stale.filter((c) => c.running);
    if (running.length > 0) {
      await this.#stopServing(`host ${successor.owner ?? '?'} owns generation ${successor.generation}; ${running.map((c) => c.name).join(', ')} must not run here`, { release: false });
      return true;
    }
    // Stopped containers that are no twins: their tails are saved, then they give way to twins once the owner has
    // published a full checkpoint of them.
    await this.#replaceNonTwins(stale, (this.#owned ?? 0) as Generation, successor, this.#lastDemotion);
    return false;
  }

  // ---- promotion -----------------------------------------------------------------------------------------------

  async #promote(): Promise<void> {
    const t0 = Date.now();
    const report: PromotionReport = { outcome: 'booted', startedAt: new Date(t0).toISOString(), ms: 0, finalize: null, claim: null, start: null, restartPolicyErrors: [], errors: [] };
    this.#lastPromotion = report;
    this.#role = 'promoting';
    this.#log.info('promotion started', { finalizeDeadlineMs: this.#o.finalizeDeadlineMs });
    const puller = this.#puller;
    let twinsStarted = false;
    try {
      if (puller !== null) {
        try {
          report.finalize = await puller.finalize(this.#o.finalizeDeadlineMs);
        } catch (err) {
          // Staging is whole-commit, so what is staged is consistent: boot from it rather than stay down.
          report.errors.push(`finalize: ${message(err)}`);
        }
      }
      if (!this.#wantsPrimary()) {
        // VRRP left MASTER while we finalized (a one-sided blip): claiming now would fence the host that serves.
        report.outcome = 'abandoned';
        this.#log.warn('promotion abandoned: VRRP left MASTER while finalizing', { vrrp: this.#intent.state });
        puller?.resume();
        this.#role = 'standby';
        return;
      }
      const basis = puller?.position() ?? { generation: 0, containers: {} };
      this.#claimBasis = basis;
      report.claim = await this.#claimNext(basis, false);
      // Recorded at once: a failure after the twins start must still leave a pending claim to make.
      if (report.claim.status !== 'lost') {
        this.#claim = report.claim;
        this.#owned = report.claim.status === 'pending' ? null : (report.claim.generation as Generation);
      }
      if (report.claim.status === 'lost') {
        report.outcome = 'lost-claim';
        this.#fenced = `lost the claim of generation ${report.claim.generation} to ${report.claim.holder ?? 'another host'}`;
        this.#log.error('promotion abandoned: another host claimed the generation first', { claim: report.claim });
        puller?.resume();
        this.#role = 'standby';
        return;
      }
      const specs = puller?.specs() ?? new Map<string, TwinSpec>();
      // Filled as each twin starts: an answer at bootTimeoutMs (the report is the one the hook answers with) says how
      // many run so far, not none.
      const s0 = Date.now();
      const soFar: StartReport = { ms: 0, containers: [] };
      report.start = soFar;
      const start = puller !== null ? await puller.startTwins((r) => { soFar.containers.push(r); soFar.ms = Date.now() - s0; }) : { ms: 0, containers: [] };
      twinsStarted = true;
      // Protected containers that are no twins (a first promotion: the user's own containers) run too.
      const others = await this.#startProtected(new Set(start.containers.map((c) => c.name)));
      start.containers.push(...others.results);
      report.start = start;
      if (puller !== null) {
        // Not awaited: its last poll may wait on an unreachable bucket; it stages nothing more (the twins run).
        this.#pullerStopping = puller.stop().catch((err: unknown) => this.#log.warn('puller stop failed', { err }));
        this.#puller = null;
      }
      // Every protected container gets its policy back, also one that failed to start: the pusher captures it.
      report.restartPolicyErrors = await this.#policies.restore(others.names, specs);
      const started = start.containers.filter((c) => c.ok).length;
      const failed = start.containers.length - started;
      const expected = Object.keys(basis.containers).length;
      report.outcome = failed > 0 && started === 0 ? 'failed' : failed > 0 ? 'partial' : started === 0 && expected > 0 ? 'failed' : 'booted';
      this.#role = 'primary';
      this.#claim = report.claim;
      // Owned (and recorded as the primary) only once the generation is ours: a restart must not resume, and a
      // demotion must not count as written, a generation whose claim never landed.
      this.#owned = report.claim.status === 'pending' ? null : (report.claim.generation as Generation);
      this.#ownerUnverified = false;
      this.#released = false;
      if (this.#owned !== null) await this.#roleFile.save('primary', this.#owned);
      this.#pushPending = true;
      await this.#startPushing();
    } catch (err) {
      report.errors.push(message(err));
      report.outcome = 'failed';
      if (!twinsStarted && this.#puller !== null) {
        // Failed before the twins started: still the standby (a later MASTER tries again).
        this.#puller.resume();
        this.#role = 'standby';
      } else if (twinsStarted) {
        this.#role = 'primary';
        if (report.claim !== null && report.claim.status !== 'pending') this.#owned ??= report.claim.generation as Generation;
        this.#pushPending = true;
      } else {
        this.#role = 'standby';
      }
      throw err;
    } finally {
      report.ms = Date.now() - t0;
      const fields = { outcome: report.outcome, ms: report.ms, claim: report.claim, started: report.start?.containers.filter((c) => c.ok).length ?? 0, failed: report.start?.containers.filter((c) => !c.ok) ?? [], errors: report.errors };
      if (report.outcome === 'booted') this.#log.info('promotion finished', fields);
      else this.#log.error('promotion finished', fields);
    }
  }

  /** Claims the generation after the one followed. Without an answer in time the claim stays pending (the twins
   *  boot from what is staged) and is made when the bucket answers. */
  async #claimNext(basis: ClaimBasis, late: boolean): Promise<ClaimState> {
    const generation = (basis.generation + 1) as Generation;
    const r = await this.#askBucket(() => claimGeneration({ bucket: this.#o.bucket, hostId: this.#o.hostId, log: this.#log }, generation, basis, { late }));
    if (r.ok) return r.value;
    this.#log.warn('claim pending: the bucket did not answer; the twins boot from what is staged', { generation, error: r.error });
    return { status: 'pending', generation, since: new Date().toISOString(), lastError: r.error };
  }

  /** Starts the protected containers not in `skip` that are stopped; `names` is every protected container (one
   *  listing serves both the start and the restart policies). */
  async #startProtected(skip: ReadonlySet<string>): Promise<{ results: StartResult[]; names: string[] }> {
    const containers = await this.#o.runtime.listProtected(this.#o.label, { includeTwins: true });
    const toStart = containers.filter((c) => !skip.has(c.name) && !c.running).map((c) => c.name);
    const results = toStart.length === 0 ? [] : await this.#o.runtime.startContainers(toStart, this.#o.startConcurrency);
    return { results, names: containers.map((c) => c.name) };
  }

  /** The primary's replication: claim (when pending), restart policies (when unknown), ownership (when taken from
   *  this host's own record), then the pusher in the owned generation behind the fence. Retried with backoff. */
  async #startPushing(): Promise<void> {
    if (this.#pusher !== null) {
      this.#pushPending = false;
      return;
    }
    try {
      if (this.#claim?.status === 'pending') {
        const claim = await this.#claimNext(this.#claimBasis ?? { generation: this.#claim.generation - 1, containers: {} }, true);
        if (claim.status === 'pending') throw new Error(`claim of generation ${claim.generation} still pending: ${claim.lastError ?? ''}`);
        this.#claim = claim;
        if (claim.status === 'lost') {
          this.#fenced = `lost the claim of generation ${claim.generation} to ${claim.holder ?? 'another host'} (made late: the bucket was unreachable at MASTER)`;
          this.#log.error('lost the late claim; demoting', { claim });
          this.#kick();
          return;
        }
        this.#owned = claim.generation as Generation;
        await this.#roleFile.save('primary', this.#owned);
      }
      const generation = this.#owned;
      if (generation === null) throw new Error('no generation to write');
      if (this.#withdrawRelease) {
        await withdrawRelease(this.#o.bucket, generation);
        this.#withdrawRelease = false;
      }
      if (this.#ownerUnverified) {
        const own = await ownershipOf(this.#o.bucket, generation);
        if (own.owner !== this.#o.hostId) {
          this.#fenced = `generation ${generation} (resumed from this host's own record) is owned by ${own.owner ?? 'nobody'}`;
          this.#log.error('the generation this host resumed is not its own; demoting', { generation, owner: own.owner });
          this.#kick();
          return;
        }
        this.#ownerUnverified = false;
      }
      if (!(await this.#policies.retryPending())) throw new Error(`restart policies unknown for ${this.#policies.pending.join(', ')} (no spec readable)`);
      const fence = new Fence({
        bucket: this.#o.bucket,
        generation,
        intervalMs: this.#o.fenceIntervalMs,
        log: this.#log,
        onFenced: (by: Ownership) => {
          this.#fenced = `host ${by.owner ?? '(unknown)'} owns generation ${by.generation}`;
          this.#kick();
        },
      });
      await fence.check();
      if (fence.fencedBy !== null) return;
      const opened = this.#claim?.status === 'won';
      const head = opened ? null : await recoverHead(this.#o.bucket, generation);
      const pusher = new Pusher({
        runtime: this.#o.runtime,
        bucket: this.#o.bucket,
        log: this.#o.log.child({ unit: 'pusher' }),
        hostId: this.#o.hostId,
        group: this.#o.group,
        label: this.#o.label,
        stateDir: this.#o.stateDir,
        excludes: this.#o.excludes,
        debounceQuietMs: this.#o.debounceQuietMs,
        debounceMaxMs: this.#o.debounceMaxMs,
        uploadConcurrency: this.#o.uploadConcurrency,
        reconcileIntervalMs: this.#o.reconcileIntervalMs,
        ...(this.#o.chunkThresholdBytes === undefined ? {} : { chunkThresholdBytes: this.#o.chunkThresholdBytes }),
        ...(this.#o.checkpoints === undefined ? {} : { checkpoints: this.#o.checkpoints }),
        // What this host staged as a standby: its twins' chunk indexes say which chunks the bucket holds, and where.
        chunkIndexDir: chunkIndexDirOf(this.#o.stateDir, this.#o.group),
        position: { generation, head, opened: opened && head === null },
        includeTwins: true,
        beforePublish: () => fence.assertOwner(),
        confirmOwnerSince: (since) => fence.assertOwnerSince(since),
        metrics: this.#o.metrics,
        gc: this.#o.gc,
        ...(this.#o.shipImages === undefined ? {} : { shipImages: this.#o.shipImages }),
      });
      try {
        await pusher.start();
      } catch (err) {
        await pusher.halt().catch(() => undefined);
        throw err;
      }
      fence.start();
      this.#pusher = pusher;
      this.#fence = fence;
      this.#pushPending = false;
      if (this.#claim?.status === 'won') this.#claim = { status: 'owner', generation };
      this.#succeeded();
      this.#log.info('primary: pushing', { generation, containers: pusher.protectedNames() });
    } catch (err) {
      this.#pushPending = true;
      if (this.#claim?.status === 'pending') this.#claim = { ...this.#claim, lastError: message(err) };
      this.#lastError = message(err);
      this.#log.warn('primary cannot push yet; trying again', { retryMs: this.#retryMs, err });
      this.#retryLater();
    }
  }

  /** Primary again in a generation this host owns (restart, or MASTER back before anyone took over). */
  async #resumePrimary(generation: Generation | null, why: string, bucketAnswered: boolean): Promise<void> {
    this.#log.info('resuming as the primary', { generation, why });
    const t0 = Date.now();
    const report: PromotionReport = { outcome: 'already-primary', startedAt: new Date(t0).toISOString(), ms: 0, finalize: null, claim: null, start: null, restartPolicyErrors: [], errors: [] };
    this.#lastPromotion = report;
    if (this.#puller !== null) {
      this.#pullerStopping = this.#puller.stop().catch((err: unknown) => this.#log.warn('puller stop failed', { err }));
      this.#puller = null;
    }
    if (generation !== null) {
      if (bucketAnswered) {
        // Any release of ours is withdrawn before a container starts (also one an earlier run of this agent wrote);
        // a failure leaves the role as it is and is retried. Then a host that took over on it meanwhile wins.
        await withdrawRelease(this.#o.bucket, generation);
        const successor = await successorOf(this.#o.bucket, generation);
        if (successor !== null) {
          this.#owned = generation;
          this.#released = false;
          await this.#stopServing(`host ${successor.owner ?? '(unknown)'} owns generation ${successor.generation}`, { release: false });
          return;
        }
      } else {
        this.#withdrawRelease = true;
      }
      this.#released = false;
    }
    const started = await this.#startProtected(new Set());
    report.start = { ms: Date.now() - t0, containers: started.results };
    report.restartPolicyErrors = await this.#policies.restore(started.names, new Map());
    this.#role = 'primary';
    if (generation === null) {
      // Nothing claimed yet (an empty bucket): claim the first generation.
      this.#claimBasis = { generation: 0, containers: {} };
      this.#claim = await this.#claimNext(this.#claimBasis, false);
      report.claim = this.#claim;
      if (this.#claim.status === 'lost') {
        this.#fenced = `lost the claim of generation ${this.#claim.generation}`;
        return;
      }
      this.#owned = this.#claim.status === 'pending' ? null : (this.#claim.generation as Generation);
    } else {
      this.#owned = generation;
      this.#claim = { status: 'owner', generation };
    }
    report.claim = this.#claim;
    report.ms = Date.now() - t0;
    if (this.#owned !== null && !this.#ownerUnverified) await this.#roleFile.save('primary', this.#owned);
    this.#pushPending = true;
    await this.#startPushing();
  }

  // ---- demotion ------------------------------------------------------------------------------------------------

  /** First half of a demotion, at once: publish nothing more, stop the protected containers, restart policy `no`.
   *  The divergent tails are saved once a successor's claim says what it finalized from (#finishDemotion). Leaving
   *  because VRRP said so (not fenced), this host releases its generation, so a host that stood down while still
   *  called MASTER may take over. */
  async #stopServing(reason: string, opts: { release: boolean }): Promise<void> {
    this.#role = 'demoting';
    const report: DemotionReport = { reason, startedAt: new Date().toISOString(), finishedAt: null, stopped: [], divergent: [], errors: [] };
    this.#lastDemotion = report;
    this.#log.warn('demoting: stopping the protected containers', { reason, generation: this.#owned });
    this.#fence?.stop();
    this.#fence = null;
    const pusher = this.#pusher;
    this.#pusher = null;
    this.#pushPending = false;
    if (this.#puller !== null) {
      this.#pullerStopping = this.#puller.stop().catch((err: unknown) => this.#log.warn('puller stop failed', { err }));
      this.#puller = null;
    }
    this.#releaseWhenAlone = opts.release;
    try {
      await this.#stopProtected(report);
    } finally {
      // Halted after the containers are down (what they wrote until then is in their upper dirs: the tail), and
      // halted also when stopping them failed: a demoting host publishes nothing more either way.
      await pusher?.halt();
    }
    this.#log.info('demoting: containers stopped; waiting for a successor to save the divergent tails', { stopped: report.stopped });
  }

  /** Restart policy `no`, then stop, every protected container; remembers which ran (they may hold a tail). */
  async #stopProtected(report: DemotionReport | null): Promise<boolean> {
    const containers = await this.#o.runtime.listProtected(this.#o.label, { includeTwins: true });
    const queue = new PQueue({ concurrency: this.#o.startConcurrency });
    let allStopped = true;
    // The policy first: an engine restarted meanwhile must not bring an `always` container back.
    await Promise.all(containers.map((c) => queue.add(async () => {
      if (c.running) this.#ranHere.add(c.name);
      try {
        await this.#o.runtime.setRestartPolicy(c.id, NO_RESTART);
        if (c.running) await this.#o.runtime.stopContainer(c.id, this.#o.stopTimeoutSeconds);
        report?.stopped.push({ name: c.name, ok: true });
      } catch (err) {
        allStopped = false;
        report?.stopped.push({ name: c.name, ok: false, error: message(err) });
        report?.errors.push(`${c.name}: ${message(err)}`);
      }
    })));
    return allStopped;
  }

  async #stepDemoting(): Promise<boolean> {
    const newest = await this.#askBucket(() => newestOwnership(this.#o.bucket, this.#knownGeneration()));
    if (!newest.ok) {
      this.#lastError = newest.error;
      this.#retryLater();
      return false;
    }
    const own = newest.value;
    // A generation of ours whose claim and head are gone (a reset bucket) is still ours to resume or release.
    const ours = own === null || own.owner === this.#o.hostId || (own.owner === null && own.generation === this.#owned);
    if (ours && this.#wantsPrimary()) {
      // MASTER again before anyone took over: this host still owns the newest generation.
      await this.#resumePrimary(own?.generation ?? null, 'VRRP MASTER again before any successor', true);
      return true;
    }
    if (!ours && own.owner !== null) {
      await this.#finishDemotion(own);
      return true;
    }
    if (ours && own !== null && this.#releaseWhenAlone && !this.#released) {
      // Released only when nothing of ours runs: another host takes over on it.
      if (!(await this.#stopProtected(null))) {
        this.#retryLater();
        return false;
      }
      await releaseGeneration(this.#o.bucket, own.generation, this.#o.hostId, this.#lastDemotion?.reason ?? 'left MASTER');
      this.#released = true;
      this.#log.warn('released generation: no successor yet; a host that VRRP calls MASTER may take over', { generation: own.generation });
    }
    this.#retryLater();
    return false;
  }

  /** Second half: save the divergent tails, then follow the successor as the standby. As a former primary every
   *  protected container may hold a tail; as a standby only those that ran or are no twins. Containers that are
   *  no twins give way to twins once the successor has published a full checkpoint of them. */
  async #finishDemotion(successor: Ownership): Promise<void> {
    const report = this.#lastDemotion;
    const oldGeneration = (this.#owned ?? 0) as Generation;
    const containers = await this.#o.runtime.listProtected(this.#o.label, { includeTwins: true });
    for (const c of containers) {
      if (c.running) {
        await this.#o.runtime.setRestartPolicy(c.id, NO_RESTART);
        await this.#o.runtime.stopContainer(c.id, this.#o.stopTimeoutSeconds);
      }
    }
    const mayHoldTail = this.#owned !== null ? containers : containers.filter((c) => c.running || !c.isTwin || this.#ranHere.has(c.name));
    for (const c of mayHoldTail) await this.#saveTail(c, oldGeneration, successor, report);
    this.#owned = null;
    this.#released = false;
    this.#releaseWhenAlone = false;
    this.#ranHere.clear();
    if (report !== null) report.finishedAt = new Date().toISOString();
    await this.#becomeStandby(`demoted: host ${successor.owner ?? '?'} owns generation ${successor.generation}`);
    await this.#replaceNonTwins(containers.filter((c) => !c.isTwin), oldGeneration, successor, report);
  }

  /** Stopped containers that are no twins: the tail first, then removed once the successor's generation has a
   *  full checkpoint of them (its first commit of each container is one), so the puller recreates them as twins.
   *  Until then they stay (stopped): the only local copy is never dropped before the new primary has it. */
  async #replaceNonTwins(containers: ProtectedContainer[], oldGeneration: Generation, successor: Ownership, report: DemotionReport | null): Promise<void> {
    if (containers.length === 0) return;
    const head = await this.#o.bucket.readHead(successor.generation);
    for (const c of containers) {
      await this.#saveTail(c, oldGeneration, successor, report);
      if (head.status !== 'ok' || head.head.containers[c.name] === undefined) {
        this.#log.info('keeping the stopped container until the new primary has a full checkpoint of it', { container: c.name, generation: successor.generation });
        continue;
      }
      await this.#o.runtime.removeContainer(c.id);
      this.#log.info('removed the stopped container; it comes back as a twin of the new primary\'s', { container: c.name, generation: successor.generation });
    }
  }

  async #saveTail(c: ProtectedContainer, oldGeneration: Generation, successor: Ownership, report: DemotionReport | null): Promise<void> {
    const done = `${c.name}@${successor.generation}`;
    if (this.#tailsSaved.has(done)) return;
    const saved = await saveDivergentTail(
      { bucket: this.#o.bucket, log: this.#log, hostId: this.#o.hostId, group: this.#o.group, stateDir: this.#o.stateDir, excludes: this.#o.excludes },
      c,
      oldGeneration,
      { generation: successor.generation, claim: successor.claim },
      report?.reason ?? `host ${successor.owner ?? '?'} owns generation ${successor.generation}`,
    );
    this.#tailsSaved.add(done);
    if (saved === null) return;
    const entry = { container: c.name, key: saved.key };
    this.#divergent.push(entry);
    report?.divergent.push(entry);
  }

  // ---- status and stop -----------------------------------------------------------------------------------------

  async status(): Promise<AgentStatus> {
    const latest = this.#intent.latest;
    let containers: AgentStatus['containers'] = [];
    if (this.#puller !== null) containers = (await this.#puller.status()).containers;
    else if (this.#pusher !== null) containers = this.#pusher.status().containers;
    return {
      role: this.#role,
      host: this.#o.hostId,
      generation: this.#generation(),
      vrrp: { state: latest?.state ?? null, at: latest?.at?.toString() ?? null, source: latest?.source ?? null },
      fenced: this.#fenced,
      claim: this.#claim,
      released: this.#released,
      refusedRelease: this.#refusedRelease,
      pendingRestartPolicies: this.#policies.pending,
      lastPromotion: this.#lastPromotion,
      lastDemotion: this.#lastDemotion,
      divergent: this.#divergent,
      containers,
      lastError: this.#lastError,
      signatures: this.#o.bucket.signatureStatus(),
      memory: processMemory(),
    };
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#settled();
    this.#fence?.stop();
    await this.#pusher?.stop();
    this.#pusher = null;
    await this.#puller?.stop();
    this.#puller = null;
    await this.#pullerStopping;
    await this.#lock?.release();
    this.#lock = null;
  }
}
