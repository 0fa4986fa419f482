// One agent per host: the primary (runs and pushes its protected containers) or the standby (keeps stopped twins
// current), switching by itself. keepalived decides who serves (the latest VRRP state this host was told), the
// bucket decides who replicates (the owner of the newest generation). Every transition runs in one serial loop, so
// nothing runs twice in parallel and a burst of notifications converges on the latest state.
import { join } from 'node:path';
import PQueue from 'p-queue';
import { NO_RESTART, twinSpecSchema, type DockerRuntime, type ProtectedContainer, type StartResult, type TwinSpec } from '../docker/index.js';
import type { Logger } from '../log/logger.js';
import { Puller } from '../puller/index.js';
import { Pusher } from '../pusher/index.js';
import { acquireStateLock, type StateLock } from '../state/lock.js';
import { recoverHead, type Bucket, type Generation, type Seq } from '../store/index.js';
import { saveDivergentTail } from './divergent.js';
import { Fence } from './fence.js';
import { newestOwnership, type Ownership } from './ownership.js';
import { RoleFileStore } from './role-file.js';
import type { AgentStatus, ClaimState, DemotionReport, PromotionReport, Role } from './types.js';
import { readVrrpStateFile, VrrpIntent, type Offer, type VrrpEvent, type VrrpState } from './vrrp-intent.js';

export interface AgentOptions {
  runtime: DockerRuntime;
  bucket: Bucket;
  log: Logger;
  hostId: string;
  group: string;
  label: string;
  stateDir: string;
  excludes: readonly string[];
  debounceQuietMs: number;
  debounceMaxMs: number;
  uploadConcurrency: number;
  reconcileIntervalMs: number;
  pollIntervalMs: number;
  downloadConcurrency: number;
  startConcurrency: number;
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
  /** Retry interval of work that waits for the bucket (a pending claim, a demotion waiting for its successor). */
  retryIntervalMs?: number;
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

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** `p`, or `undefined` after `ms` (p goes on; its rejection is handled). */
async function within<T>(p: Promise<T>, ms: number): Promise<{ done: true; value: T } | { done: false }> {
  let timer: NodeJS.Timeout | undefined;
  p.catch(() => undefined);
  try {
    return await Promise.race([
      p.then((value) => ({ done: true as const, value })),
      new Promise<{ done: false }>((resolve) => { timer = setTimeout(() => resolve({ done: false }), Math.max(0, ms)); }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export class Agent {
  readonly #o: AgentOptions;
  readonly #log: Logger;
  readonly #intent = new VrrpIntent();
  readonly #roleFile: RoleFileStore;
  #role: Role = 'standby';
  /** Why this host must not promote although VRRP says MASTER (fenced, lost claim); cleared when VRRP leaves MASTER. */
  #fenced: string | null = null;
  #puller: Puller | null = null;
  #pusher: Pusher | null = null;
  #fence: Fence | null = null;
  /** The generation this host writes (primary) or last wrote (demoting). */
  #owned: Generation | null = null;
  #claim: ClaimState | null = null;
  /** What the pending claim finalized from. */
  #claimFrom: { generation: number; containers: Record<string, number> } | null = null;
  #lastPromotion: PromotionReport | null = null;
  #lastDemotion: DemotionReport | null = null;
  #divergent: { container: string; key: string }[] = [];
  #lastError: string | null = null;
  #lock: StateLock | null = null;
  #loop: Promise<void> | null = null;
  #again = false;
  #timer: NodeJS.Timeout | null = null;
  #stopped = false;
  /** A primary whose pusher could not start yet (bucket down, claim pending, policies unknown). */
  #pushPending = false;
  #pendingPolicies = new Set<string>();

  constructor(opts: AgentOptions) {
    if (opts.fenceIntervalMs > 1000) throw new RangeError(`Expected \`fenceIntervalMs\` to be at most 1000, got ${opts.fenceIntervalMs}`);
    this.#o = opts;
    this.#log = opts.log.child({ unit: 'agent' });
    this.#roleFile = new RoleFileStore(opts.stateDir, opts.group);
  }

  get role(): Role {
    return this.#role;
  }

  /** Takes the agent's lock, checks the engine, reads the VRRP state notify.sh recorded; starts nothing yet. */
  async open(): Promise<void> {
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

  /** Decides the first role and converges; resolves once the first transition is done. */
  async start(): Promise<void> {
    await this.#decideInitialRole();
    this.#kick();
    await this.#settled();
  }

  // ---- notifications -------------------------------------------------------------------------------------------

  /** One VRRP notification from the hook. MASTER waits (bounded) for the promotion; the others answer at once. */
  async notify(n: { state: VrrpState; at?: string | undefined }): Promise<NotifyAnswer> {
    const event: VrrpEvent = { state: n.state, at: n.at === undefined ? null : BigInt(n.at), receivedAt: Date.now(), source: 'hook' };
    const offer = this.#intent.offer(event);
    this.#log.info('vrrp notification', { state: n.state, at: n.at, offer, role: this.#role });
    if (offer === 'accepted' && n.state !== 'MASTER' && this.#fenced !== null) {
      this.#log.info('VRRP left MASTER; a later MASTER may promote this host again', { fenced: this.#fenced });
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
    if (this.#role === 'standby') return this.#followed();
    return this.#owned;
  }

  #followed(): number | null {
    try {
      return this.#puller?.position().generation || null;
    } catch {
      return null;
    }
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
        this.#lastError = null;
      } catch (err) {
        this.#lastError = message(err);
        this.#log.error('transition failed; trying again', { role: this.#role, err });
        this.#schedule(this.#o.retryIntervalMs ?? 1000);
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

  #wantsPrimary(): boolean {
    return this.#intent.state === 'MASTER' && this.#fenced === null;
  }

  /** VRRP said this host is not MASTER (and the settle time of a flap has passed): true; unknown: false. */
  #toldToLeave(): { leave: boolean; waitMs: number } {
    const latest = this.#intent.latest;
    if (latest === null || latest.state === 'MASTER') return { leave: false, waitMs: 0 };
    const waitMs = latest.receivedAt + this.#o.backupSettleMs - Date.now();
    return waitMs > 0 ? { leave: false, waitMs } : { leave: true, waitMs: 0 };
  }

  /** One transition; true when the role moved (the loop looks again). */
  async #step(): Promise<boolean> {
    switch (this.#role) {
      case 'standby':
        if (this.#wantsPrimary()) {
          await this.#promote();
          return true;
        }
        return this.#checkStandbyInvariant();
      case 'primary': {
        if (this.#fenced !== null) {
          await this.#stopServing(this.#fenced);
          return true;
        }
        const { leave, waitMs } = this.#toldToLeave();
        if (leave) {
          await this.#stopServing(`VRRP ${this.#intent.state ?? ''}`);
          return true;
        }
        if (waitMs > 0) this.#schedule(waitMs);
        else if (this.#pushPending) await this.#startPushing();
        return false;
      }
      case 'demoting': {
        const newest = await this.#askBucket(() => newestOwnership(this.#o.bucket));
        if (newest.ok && this.#wantsPrimary() && (newest.value === null || newest.value.owner === this.#o.hostId)) {
          // MASTER again before anyone took over: this host still owns the newest generation.
          await this.#resumePrimary(newest.value?.generation ?? null, 'VRRP MASTER again before any successor');
          return true;
        }
        if (newest.ok && newest.value !== null && newest.value.owner !== null && newest.value.owner !== this.#o.hostId) {
          await this.#finishDemotion(newest.value);
          return true;
        }
        this.#schedule(this.#o.retryIntervalMs ?? 500);
        return false;
      }
      case 'promoting':
        return false;
    }
  }

  async #askBucket<T>(ask: () => Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: string }> {
    try {
      const r = await within(ask(), this.#o.bucketDecisionMs ?? 1000);
      return r.done ? { ok: true, value: r.value } : { ok: false, error: `the bucket did not answer within ${this.#o.bucketDecisionMs ?? 1000} ms` };
    } catch (err) {
      return { ok: false, error: message(err) };
    }
  }

  // ---- start-up ------------------------------------------------------------------------------------------------

  async #decideInitialRole(): Promise<void> {
    const saved = await this.#roleFile.load();
    const vrrp = this.#intent.state;
    const toldBackup = vrrp !== null && vrrp !== 'MASTER';
    // A host told it is not MASTER stops its containers first and asks the bucket after (within 2 s of start).
    if (toldBackup && saved?.role === 'primary') {
      this.#owned = saved.generation as Generation;
      await this.#stopServing(`started while VRRP says ${vrrp}`);
      return;
    }
    const newest = await this.#askBucket(() => newestOwnership(this.#o.bucket));
    if (!newest.ok) {
      this.#log.warn('the bucket did not answer at start; deciding from this host\'s own record', { error: newest.error, saved: saved?.role ?? null, vrrp });
      if (saved?.role === 'primary' && saved.generation > 0 && !toldBackup) {
        await this.#resumePrimary(saved.generation as Generation, 'restarted as the primary (bucket unreachable)');
      } else {
        await this.#becomeStandby('start: bucket unreachable and this host was not the primary');
      }
      return;
    }
    const own = newest.value;
    if (own !== null && own.owner === this.#o.hostId && !toldBackup) {
      await this.#resumePrimary(own.generation, 'restarted as the owner of the newest generation');
      return;
    }
    if (own !== null && own.owner !== null && own.owner !== this.#o.hostId) {
      // Another host took over while this one was away: whatever Docker restarted here is stale.
      this.#owned = saved?.role === 'primary' ? (saved.generation as Generation) : null;
      this.#fenceSupersededMaster(own);
      await this.#stopServing(`host ${own.owner} owns generation ${own.generation}`);
      return;
    }
    if (own !== null && own.owner === this.#o.hostId) {
      this.#owned = own.generation;
      await this.#stopServing(`started while VRRP says ${vrrp ?? '(unknown)'}`);
      return;
    }
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
      const puller = new Puller({
        runtime: this.#o.runtime,
        bucket: this.#o.bucket,
        log: this.#o.log.child({ unit: 'puller' }),
        group: this.#o.group,
        stateDir: this.#o.stateDir,
        pollIntervalMs: this.#o.pollIntervalMs,
        downloadConcurrency: this.#o.downloadConcurrency,
        startConcurrency: this.#o.startConcurrency,
      });
      await puller.open();
      puller.start();
      this.#puller = puller;
    }
    this.#role = 'standby';
    this.#owned = null;
    this.#claim = null;
    await this.#roleFile.save('standby', this.#followed() ?? 0);
    this.#log.info('standby', { why, fenced: this.#fenced });
    this.#schedule(2000);
  }

  /** A standby runs no protected container and keeps no container that is not a twin, once another host owns the
   *  newest generation (a host that restarted its stale containers, a first install with containers on both). */
  async #checkStandbyInvariant(): Promise<boolean> {
    this.#schedule(2000);
    const containers = await this.#o.runtime.listProtected(this.#o.label, { includeTwins: true });
    const stale = containers.filter((c) => c.running || !c.isTwin);
    if (stale.length === 0) return false;
    const newest = await this.#askBucket(() => newestOwnership(this.#o.bucket));
    if (!newest.ok || newest.value === null || newest.value.owner === null || newest.value.owner === this.#o.hostId) return false;
    await this.#stopServing(`host ${newest.value.owner} owns generation ${newest.value.generation}; ${stale.map((c) => c.name).join(', ')} must not run here`);
    return true;
  }

  // ---- promotion -----------------------------------------------------------------------------------------------

  async #promote(): Promise<void> {
    const t0 = Date.now();
    const report: PromotionReport = { outcome: 'booted', startedAt: new Date(t0).toISOString(), ms: 0, finalize: null, claim: null, start: null, restartPolicyErrors: [], errors: [] };
    this.#lastPromotion = report;
    this.#role = 'promoting';
    this.#log.info('promotion started', { finalizeDeadlineMs: this.#o.finalizeDeadlineMs });
    const puller = this.#puller;
    try {
      if (puller !== null) {
        try {
          report.finalize = await puller.finalize(this.#o.finalizeDeadlineMs);
        } catch (err) {
          // Staging is whole-commit, so what is staged is consistent: boot from it rather than stay down.
          report.errors.push(`finalize: ${message(err)}`);
        }
      }
      const from = puller?.position() ?? { generation: 0, containers: {} };
      report.claim = await this.#claimNext(from);
      if (report.claim.status === 'lost') {
        report.outcome = 'lost-claim';
        this.#fenced = `lost the claim of generation ${report.claim.generation} to ${report.claim.holder ?? 'another host'}`;
        this.#log.error('promotion abandoned: another host claimed the generation first', { claim: report.claim });
        puller?.resume();
        this.#role = 'standby';
        return;
      }
      const specs = puller?.specs() ?? new Map<string, TwinSpec>();
      const start = puller !== null ? await puller.startTwins() : { ms: 0, containers: [] };
      // Protected containers that are no twins (a first promotion: the user's own containers) run too.
      const others = await this.#startProtected(new Set(start.containers.map((c) => c.name)));
      start.containers.push(...others);
      report.start = start;
      if (puller !== null) {
        await puller.stop();
        this.#puller = null;
      }
      const started = start.containers.filter((c) => c.ok).map((c) => c.name);
      await this.#restoreRestartPolicies(started, specs, report);
      const failed = start.containers.length - started.length;
      const expected = Object.keys(from.containers).length;
      report.outcome = failed > 0 && started.length === 0 ? 'failed' : failed > 0 ? 'partial' : started.length === 0 && expected > 0 ? 'failed' : 'booted';
      this.#role = 'primary';
      this.#owned = report.claim.generation as Generation;
      this.#claim = report.claim;
      await this.#roleFile.save('primary', this.#owned);
      this.#pushPending = true;
      await this.#startPushing();
    } catch (err) {
      report.errors.push(message(err));
      report.outcome = 'failed';
      if (this.#puller !== null) {
        // Failed before the twins started: still the standby (a later MASTER tries again).
        this.#puller.resume();
        this.#role = 'standby';
      } else {
        this.#role = 'primary';
        this.#pushPending = true;
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
  async #claimNext(from: { generation: number; containers: Record<string, number> }): Promise<ClaimState> {
    const generation = (from.generation + 1) as Generation;
    this.#claimFrom = from;
    const r = await this.#askBucket(() => this.#claimOnce(generation, from));
    if (r.ok) return r.value;
    this.#log.warn('claim pending: the bucket did not answer; the twins boot from what is staged', { generation, error: r.error });
    return { status: 'pending', generation, since: new Date().toISOString(), lastError: r.error };
  }

  async #claimOnce(generation: Generation, from: { generation: number; containers: Record<string, number> }): Promise<ClaimState> {
    const newest = (await this.#o.bucket.listGenerations()).at(-1) ?? 0;
    if (newest > generation) {
      // Someone took over after what we staged: theirs wins.
      const holder = await this.#o.bucket.readClaim(newest as Generation).catch(() => null);
      return { status: 'lost', generation: newest, holder: holder?.host ?? null };
    }
    if (newest < generation) {
      const result = await this.#o.bucket.claimGeneration({
        version: 1,
        generation,
        host: this.#o.hostId,
        claimedAt: new Date().toISOString(),
        from: { generation: from.generation as Generation, containers: from.containers as Record<string, Seq> },
      });
      if (result.won) {
        this.#log.info('claimed generation', { generation, from });
        return { status: 'won', generation };
      }
    }
    // The generation exists: ours when an earlier attempt landed although its answer did not reach us in time.
    const holder = await this.#o.bucket.readClaim(generation);
    if (holder?.host === this.#o.hostId) {
      this.#log.info('claimed generation (an earlier attempt had landed)', { generation, claimedAt: holder.claimedAt });
      return { status: 'won', generation };
    }
    return { status: 'lost', generation, holder: holder?.host ?? null };
  }

  async #startProtected(skip: ReadonlySet<string>): Promise<StartResult[]> {
    const containers = await this.#o.runtime.listProtected(this.#o.label, { includeTwins: true });
    const names = containers.filter((c) => !skip.has(c.name) && !c.running).map((c) => c.name);
    return names.length === 0 ? [] : this.#o.runtime.startContainers(names, this.#o.startConcurrency);
  }

  /** Twins run with restart policy `no`; promoted, they get their primary's back (from the spec). A container whose
   *  spec the bucket does not have keeps its policy; one whose spec cannot be read now is retried before pushing
   *  starts (the pusher captures the spec, policy included, from the running container). */
  async #restoreRestartPolicies(names: string[], specs: ReadonlyMap<string, TwinSpec>, report: PromotionReport | null): Promise<void> {
    for (const name of names) {
      const spec = specs.get(name) ?? (await this.#specFromBucket(name));
      if (spec === 'unknown') {
        this.#pendingPolicies.add(name);
        continue;
      }
      this.#pendingPolicies.delete(name);
      if (spec === null) continue;
      try {
        await this.#o.runtime.setRestartPolicy(name, spec.restartPolicy ?? NO_RESTART);
      } catch (err) {
        this.#pendingPolicies.add(name);
        report?.restartPolicyErrors.push({ name, error: message(err) });
      }
    }
  }

  async #specFromBucket(name: string): Promise<TwinSpec | null | 'unknown'> {
    const r = await this.#askBucket(() => this.#o.bucket.getSpec(name));
    if (!r.ok) return 'unknown';
    if (r.value === undefined) return null;
    const parsed = twinSpecSchema.safeParse(r.value);
    if (!parsed.success) {
      this.#log.warn('spec in the bucket does not parse; the container keeps its restart policy', { container: name, reason: parsed.error.issues[0]?.message });
      return null;
    }
    return parsed.data;
  }

  /** The primary's replication: claim (when pending), restart policies (when unknown), then the pusher in the owned
   *  generation behind the fence. Retried by the loop until it is done. */
  async #startPushing(): Promise<void> {
    if (this.#pusher !== null) {
      this.#pushPending = false;
      return;
    }
    try {
      if (this.#claim?.status === 'pending') {
        const from = this.#claimFrom ?? { generation: this.#claim.generation - 1, containers: {} };
        const r = await this.#askBucket(() => this.#claimOnce(this.#claim!.generation as Generation, from));
        if (!r.ok) throw new Error(`claim still pending: ${r.error}`);
        this.#claim = r.value;
        if (r.value.status === 'lost') {
          this.#fenced = `lost the claim of generation ${r.value.generation} to ${r.value.holder ?? 'another host'} (made late: the bucket was unreachable at MASTER)`;
          this.#log.error('lost the late claim; demoting', { claim: r.value });
          this.#kick();
          return;
        }
      }
      if (this.#pendingPolicies.size > 0) await this.#restoreRestartPolicies([...this.#pendingPolicies], new Map(), null);
      if (this.#pendingPolicies.size > 0) throw new Error(`restart policies unknown for ${[...this.#pendingPolicies].join(', ')} (no spec readable)`);
      const generation = this.#owned;
      if (generation === null) throw new Error('no generation to write');
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
        position: { generation, head, opened: opened && head === null },
        includeTwins: true,
        beforePublish: () => fence.assertOwner(),
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
      this.#log.info('primary: pushing', { generation, containers: pusher.protectedNames() });
    } catch (err) {
      this.#pushPending = true;
      this.#lastError = message(err);
      this.#log.warn('primary cannot push yet; trying again', { err });
      this.#schedule(this.#o.retryIntervalMs ?? 1000);
    }
  }

  /** Primary again in a generation this host owns (restart, or MASTER back before anyone took over). */
  async #resumePrimary(generation: Generation | null, why: string): Promise<void> {
    this.#log.info('resuming as the primary', { generation, why });
    const t0 = Date.now();
    const report: PromotionReport = { outcome: 'already-primary', startedAt: new Date(t0).toISOString(), ms: 0, finalize: null, claim: null, start: null, restartPolicyErrors: [], errors: [] };
    if (this.#puller !== null) {
      await this.#puller.stop();
      this.#puller = null;
    }
    const started = await this.#startProtected(new Set());
    report.start = { ms: Date.now() - t0, containers: started };
    const running = (await this.#o.runtime.listProtected(this.#o.label, { includeTwins: true })).map((c) => c.name);
    await this.#restoreRestartPolicies(running, new Map(), report);
    this.#role = 'primary';
    if (generation === null) {
      // Nothing claimed yet (an empty bucket): claim the first generation.
      this.#claimFrom = { generation: 0, containers: {} };
      this.#claim = await this.#claimNext(this.#claimFrom);
      if (this.#claim.status === 'lost') {
        this.#fenced = `lost the claim of generation ${this.#claim.generation}`;
        return;
      }
      this.#owned = this.#claim.generation as Generation;
    } else {
      this.#owned = generation;
      this.#claim = { status: 'owner', generation };
    }
    report.claim = this.#claim;
    report.ms = Date.now() - t0;
    this.#lastPromotion = report;
    await this.#roleFile.save('primary', this.#owned);
    this.#pushPending = true;
    await this.#startPushing();
  }

  // ---- demotion ------------------------------------------------------------------------------------------------

  /** First half of a demotion, at once: publish nothing more, stop the protected containers, restart policy `no`.
   *  The divergent tail is saved once a successor's claim says what it finalized from (#finishDemotion). */
  async #stopServing(reason: string): Promise<void> {
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
      await this.#puller.stop();
      this.#puller = null;
    }
    const containers = await this.#o.runtime.listProtected(this.#o.label, { includeTwins: true });
    const queue = new PQueue({ concurrency: this.#o.startConcurrency });
    // The policy first: an engine restarted meanwhile must not bring an `always` container back.
    await Promise.all(containers.map((c) => queue.add(async () => {
      try {
        await this.#o.runtime.setRestartPolicy(c.id, NO_RESTART);
        if (c.running) await this.#o.runtime.stopContainer(c.id, this.#o.stopTimeoutSeconds);
        report.stopped.push({ name: c.name, ok: true });
      } catch (err) {
        report.stopped.push({ name: c.name, ok: false, error: message(err) });
        report.errors.push(`${c.name}: ${message(err)}`);
      }
    })));
    // Halted after the containers are down: what they wrote until then is in their upper dirs (the tail).
    await pusher?.halt();
    this.#log.info('demoting: containers stopped; waiting for the successor to save the divergent tail', { stopped: report.stopped });
  }

  /** Second half: save each container's divergent tail, turn what is not a twin into one (removed; the puller creates
   *  it from the successor's spec), then follow the successor as the standby. */
  async #finishDemotion(successor: Ownership): Promise<void> {
    const report = this.#lastDemotion;
    const oldGeneration = (this.#owned ?? 0) as Generation;
    const containers = await this.#o.runtime.listProtected(this.#o.label, { includeTwins: true });
    for (const c of containers) {
      if (c.running) {
        await this.#o.runtime.setRestartPolicy(c.id, NO_RESTART);
        await this.#o.runtime.stopContainer(c.id, this.#o.stopTimeoutSeconds);
      }
      await this.#saveTail(c, oldGeneration, successor, report);
      // A container that is not a twin cannot be staged into: it is removed (its tail is saved) and comes back as a
      // twin of the successor's container. Twins stay; the successor's first full commit replaces their content.
      if (!c.isTwin) await this.#o.runtime.removeContainer(c.id);
    }
    if (report !== null) report.finishedAt = new Date().toISOString();
    await this.#becomeStandby(`demoted: host ${successor.owner ?? '?'} owns generation ${successor.generation}`);
  }

  async #saveTail(c: ProtectedContainer, oldGeneration: Generation, successor: Ownership, report: DemotionReport | null): Promise<void> {
    const saved = await saveDivergentTail(
      { bucket: this.#o.bucket, log: this.#log, hostId: this.#o.hostId, group: this.#o.group, stateDir: this.#o.stateDir, excludes: this.#o.excludes },
      c,
      oldGeneration,
      { generation: successor.generation, claim: successor.claim },
      report?.reason ?? `host ${successor.owner ?? '?'} owns generation ${successor.generation}`,
    );
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
      lastPromotion: this.#lastPromotion,
      lastDemotion: this.#lastDemotion,
      divergent: this.#divergent,
      containers,
      lastError: this.#lastError,
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
    await this.#lock?.release();
    this.#lock = null;
  }
}
