// Keeping the twins: every container with a spec has a stopped twin created from it, of the spec's image, and is
// the container its applied seq describes. Checked every few polls and whenever the head moved; a twin held for what
// this host lacks is checked every poll.
//
// Two kinds of "no": a spec that is refused (it asks for what the policy or the trust refuses, or what no twin can
// have) removes its stopped twin, since the spec itself will not change its mind. What this host lacks for the twin
// (a bind source, a device, a network, the image, an engine that answers) is a fact of the moment: the twin is held
// as it is, with its staged data, none is created meanwhile, and it is created or kept once the host has it.
// A spec.json that is not the one the newest commit names is neither: it waits (blocked) for a record naming it, the
// spec in use and its twin kept; a new spec is put before the commit naming it, and an older one put back is not used.
import {
  DEFAULT_TWIN_POLICY, ImageMissingError, isEngineUnavailable, LayerResolveError, specDigest, TwinHostNotReadyError, TwinRefusedError, TwinSpecRefusedError, twinSpecSchema,
  type DockerRuntime, type HostLookups, type TwinPolicy, type TwinSpec, type TwinState,
} from '../docker/index.js';
import { TwinlayerError } from '../log/errors.js';
import type { Logger } from '../log/logger.js';
import { BucketObjectInvalidError, ObjectTooLargeError, type Bucket } from '../store/index.js';
import type { AppliedState } from './applied-state.js';
import type { ImageLoader } from './image-loader.js';
import type { ContainerRuntimeState, ContainerStates, HostProblem } from './container-state.js';
import type { JournalFollower } from './journal-follower.js';

/** A problem held for, with what is being done about it now (shown in the status, never compared nor logged). */
type HostProblemIn = string | { problem: string; detail: string };

/** A container that cannot be replicated because of its spec (not a fault of the poll). */
class TwinRefusal extends TwinlayerError {
  constructor(reason: string) {
    super('TWIN_SPEC_REFUSED', reason, {});
  }
}

/** spec.json is not the spec the newest commit names: a new spec whose commit is not read yet (the primary puts the
 *  spec before the full commit naming it), or an older one put back. Neither is used; the container waits. */
class SpecNotNamed extends TwinlayerError {
  constructor(reason: string, container: string) {
    super('TWIN_SPEC_NOT_NAMED', reason, { container });
  }
}

/** A pass stops when this says so (a finalize began: the twins are about to boot and are not touched any more). */
export type Halted = () => boolean;
const never: Halted = () => false;

export interface TwinKeeperOptions {
  runtime: DockerRuntime;
  bucket: Bucket;
  log: Logger;
  /** Check every twin every this many polls (and whenever the head moved). */
  checkEvery: number;
  /** Labelled on the twins this keeper creates. */
  group: string;
  /** What this host lets a trusted spec ask for (privileged fields). Default DEFAULT_TWIN_POLICY. */
  policy?: TwinPolicy;
  /** Honour privileged fields of specs no trusted key signed: anyone who can write the bucket then gets them on this
   *  host. For a group whose bucket is as trusted as its hosts. Default false. */
  trustUnsignedSpecs?: boolean;
  /** Loads a spec's image this engine lacks from the bucket (by the identity the spec names); without it such a twin
   *  is held until the image is loaded by hand. */
  images?: ImageLoader;
}

export class TwinKeeper {
  readonly #o: TwinKeeperOptions;
  readonly #containers: ContainerStates;
  readonly #journal: JournalFollower;
  #pollsSinceCheck = 0;
  /** The engine did not answer at the last check (logged once until it answers again). */
  #engineDown = false;
  /** Per container, the twin's listing fingerprint ("id state") and the spec its last full check passed with. */
  readonly #checked = new Map<string, { fingerprint: string; spec: TwinSpec }>();

  constructor(opts: TwinKeeperOptions, containers: ContainerStates, journal: JournalFollower) {
    this.#o = opts;
    this.#containers = containers;
    this.#journal = journal;
  }

  /** An idle standby must stay cheap: listing specs and inspecting every twin on each poll cost 18 CPU-seconds in
   *  30 s with 40 twins at a 20 ms poll. Staging checks its own twin right before writing, so this only bounds how
   *  soon a removed twin comes back. */
  due(headMoved: boolean): boolean {
    const due = headMoved || this.#pollsSinceCheck === 0 || this.#pollsSinceCheck >= this.#o.checkEvery;
    this.#pollsSinceCheck = due ? 1 : this.#pollsSinceCheck + 1;
    return due;
  }

  /** Whether `c` may be staged into before this poll's check: its last check passed (a stopped twin of the spec in
   *  use, which no record since names another of, on a host that has what it needs) and nothing since put it in
   *  doubt. Each commit checks its twin again right before writing; the check that follows leaves it be meanwhile. */
  readyToStage(c: ContainerRuntimeState): boolean {
    return !this.#engineDown && c.twin === 'stopped' && c.spec !== null && !c.specStale && c.refused === null && c.blocked === null
      && c.hostProblems.length === 0 && !c.restage;
  }

  /** Whether the engine did not answer at the last check: no staging starts until it does. */
  get engineDown(): boolean {
    return this.#engineDown;
  }

  /** The engine did not answer (isEngineUnavailable): logged once until it answers again; the next poll checks. */
  engineUnavailable(err: unknown): void {
    if (!this.#engineDown) this.#o.log.warn('docker engine unavailable; twins are kept as they are and checked again when it answers', { err });
    this.#engineDown = true;
    this.checkSoon();
  }

  /** The next poll checks every twin (a twin disappeared). */
  checkSoon(): void {
    this.#pollsSinceCheck = 0;
  }

  /**
   * For every container with a spec: its twin exists (created from the spec when absent, e.g. after a `docker rm`),
   * is a twin, runs the spec's image, and is the container the applied seq describes. A recreated twin has an empty
   * upper dir, so its applied seq is dropped and its queue rebuilt from the journal (from the last full commit).
   */
  async ensureTwins(state: AppliedState, halted: Halted = never): Promise<void> {
    const names = new Set([...(await this.#o.bucket.listSpecNames()), ...this.#containers.names()]);
    await this.#ensure(state, names, true, halted);
  }

  /** Between the full checks: the twins held for what this host lacked, checked again (no bucket request). */
  async recheckHeld(state: AppliedState, halted: Halted = never): Promise<void> {
    const held: string[] = [];
    for (const [n, c] of this.#containers.each()) if (c.hostProblems.length > 0) held.push(n);
    if (held.length > 0) await this.#ensure(state, held, false, halted);
  }

  async #ensure(state: AppliedState, names: Iterable<string>, full: boolean, halted: Halted): Promise<void> {
    const policy = this.#o.policy ?? DEFAULT_TWIN_POLICY;
    // One lookup per network or volume in this pass, however many twins name it.
    const lookups = this.#o.runtime.hostLookups();
    // One listing of the twins per full pass: a twin as the last check left it is not inspected again (with 200 twins
    // the inspects of every pass cost an idle standby a fifth of a core). Without the listing (the engine did not
    // answer) every twin is checked, and the checks say what is wrong.
    const seen = full ? await this.#o.runtime.twinFingerprints().catch(() => null) : null;
    for (const name of names) {
      // Checked per container: a pass that was waiting on the bucket or the engine when a finalize began must not
      // replace, remove or requeue a twin the finalize reported on.
      if (halted()) return;
      const c = this.#containers.get(name);
      // Its twin is being staged into: neither replaced nor re-checked now, but at the next poll (a held one is
      // checked every poll anyway).
      if (c.staging) {
        if (full) this.checkSoon();
        continue;
      }
      const reread = { spec: false };
      const fingerprint = seen?.get(name);
      try {
        if (fingerprint !== undefined && (await this.#asLeft(name, c, fingerprint, policy, lookups))) continue;
        this.#checked.delete(name);
        await this.#ensureOne(state, name, c, policy, lookups, reread, halted);
        this.#engineAnswers();
        if (fingerprint !== undefined && c.spec !== null && c.refused === null && c.hostProblems.length === 0) this.#checked.set(name, { fingerprint, spec: c.spec });
      } catch (err) {
        if (isEngineUnavailable(err)) {
          // Dockerd down or restarting: nothing is wrong with any container. Every twin is kept as it is and checked
          // again at the next poll (logged once, not once per container and poll).
          if (reread.spec) c.specStale = true;
          this.engineUnavailable(err);
          // Each container's status says why it is held; the log says it once (engineUnavailable).
          // A refused one is not held: nothing the host could add changes that (and a held one is re-read every poll).
          for (const n of names) {
            const h = this.#containers.get(n);
            if (h.refused === null) this.#hold(n, h, [err instanceof Error ? err.message : String(err)], { quiet: true });
          }
          break;
        }
        // Any other answer of the engine (a refusal, an image absent) says it is up: staging may start again.
        if (fromEngine(err)) this.#engineAnswers();
        if (err instanceof SpecNotNamed) {
          // Not a refusal: the spec in use (if any) and its twin are kept, and the container waits for the record.
          if (c.blocked !== err.message) this.#o.log.warn('spec.json is not the spec the newest commit names; waiting for a record naming it', { container: name, err });
          c.blocked = err.message;
          continue;
        }
        if (err instanceof TwinRefusal || err instanceof TwinSpecRefusedError || err instanceof TwinRefusedError || err instanceof LayerResolveError) {
          if (err instanceof TwinSpecRefusedError && !halted()) await this.#removeRefusedTwinOf(name);
          const reason = err.message;
          if (c.refused !== reason) this.#o.log.error('twin refused; this container is not replicated', { container: name, err });
          c.twin = 'refused';
          c.refused = reason;
          c.spec = null;
          // Refused outright: nothing the host could add changes that.
          c.hostProblems = [];
          continue;
        }
        // The image is not here (yet), or another Docker failure: held, the spec and the twin kept as they are.
        // Bucket failures fail the poll.
        if (!(err instanceof TwinlayerError && err.code.startsWith('DOCKER_'))) throw err;
        this.#hold(name, c, [err.message]);
      }
    }
    if (halted()) return;
    const restage = this.#containers.entries().filter(([, c]) => c.restage && !c.staging).map(([n]) => n);
    if (restage.length > 0) await this.#journal.requeue(state, restage, halted);
  }

  /** The twin is the container, in the state, the last full check of it found, made from the spec in use, which is
   *  current, and the host still has what it needs: nothing to do. Any change, or a doubt, checks it in full. */
  async #asLeft(name: string, c: ContainerRuntimeState, fingerprint: string, policy: TwinPolicy, lookups: HostLookups): Promise<boolean> {
    const last = this.#checked.get(name);
    if (last === undefined || last.fingerprint !== fingerprint || c.spec === null || last.spec !== c.spec || c.specStale) return false;
    if (c.refused !== null || c.blocked !== null || c.hostProblems.length > 0) return false;
    return (await this.#o.runtime.hostProblems(c.spec, policy, lookups)).length === 0;
  }

  #engineAnswers(): void {
    if (!this.#engineDown) return;
    this.#engineDown = false;
    this.#o.log.info('docker engine answers again; twins checked');
  }

  /** A stopped twin of a refused spec is removed; a Docker failure doing so does not fail the pass (it is tried
   *  again at the next check, the container refused meanwhile). */
  async #removeRefusedTwinOf(name: string): Promise<void> {
    try {
      await this.#removeRefusedTwin(name);
    } catch (err) {
      if (isEngineUnavailable(err)) this.engineUnavailable(err);
      else this.#o.log.warn('the stopped twin of a refused spec could not be removed; tried again at the next check', { container: name, err });
      this.checkSoon();
    }
  }

  async #ensureOne(state: AppliedState, name: string, c: ContainerRuntimeState, policy: TwinPolicy, lookups: HostLookups, reread: { spec: boolean }, halted: Halted): Promise<void> {
    if (c.spec === null || c.specStale) {
      const read = await this.#readSpec(name, this.#namedSpec(state, name, c));
      // The spec read may have waited on the bucket while a finalize began: the twins keep the spec they boot with.
      if (halted()) return;
      reread.spec = true;
      c.spec = read.spec;
      c.specTrusted = read.trusted;
      c.specStale = false;
      if (c.blocked?.startsWith(SPEC_WAIT) === true) c.blocked = null;
      await this.#replaceOutdatedTwin(name, c.spec, halted);
    }
    if (halted()) return;
    const lacking = await this.#o.runtime.hostProblems(c.spec, policy, lookups);
    let twin: TwinState;
    try {
      twin = await this.#o.runtime.ensureTwin(c.spec, { group: this.#o.group, trusted: c.specTrusted, policy, hostProblems: lacking });
    } catch (err) {
      if (err instanceof ImageMissingError && this.#o.images !== undefined && c.spec.imageIdentity !== undefined) {
        // Held while the loader brings the image from the bucket (never waited for here: asked again every poll). Only
        // for a trusted spec: an unsigned one would let any bucket writer bring an image of its own onto this host.
        // The loader's state (loading, waiting, refused until a time) goes to the status only: in the logged problem it
        // would log a warn per twin at each of its changes.
        const loading: HostProblemIn = c.specTrusted
          ? { problem: `${err.message}; it is loaded from the bucket`, detail: this.#o.images.request(name, { identity: c.spec.imageIdentity, ref: c.spec.image }) }
          : `${err.message}; not loaded from the bucket: the spec is not signed by a key the group trusts`;
        c.refused = null;
        c.twin = 'absent';
        this.#hold(name, c, [...lacking, loading]);
        return;
      }
      // None created while the host lacks something; an existing twin was adopted above it.
      if (!(err instanceof TwinHostNotReadyError)) throw err;
      twin = { state: 'absent' };
    }
    c.refused = null;
    c.twin = twin.state;
    this.#hold(name, c, lacking);
    if (twin.state !== 'absent') this.#checkTwinId(state, name, c, twin.id);
  }

  /** Records what this host lacks for the twin, each problem with the time it was first seen; logs a change. */
  #hold(name: string, c: ContainerRuntimeState, held: HostProblemIn[], opts: { quiet?: boolean } = {}): void {
    const before = new Map(c.hostProblems.map((p) => [p.problem, p.since]));
    const now = new Date().toISOString();
    const next: HostProblem[] = held.map((h) => {
      const { problem, detail } = typeof h === 'string' ? { problem: h, detail: undefined } : h;
      return { problem, since: before.get(problem) ?? now, ...(detail === undefined ? {} : { detail }) };
    });
    const problems = next.map((p) => p.problem);
    const changed = next.length !== before.size || next.some((p) => !before.has(p.problem));
    c.hostProblems = next;
    if (!changed || opts.quiet === true) return;
    if (next.length > 0) {
      this.#o.log.warn('twin held: this host lacks what its spec needs; an existing twin is kept with what is staged into it, none is created, checked again every poll', { container: name, twin: c.twin, problems });
    } else {
      this.#o.log.info('this host has what the twin needs again', { container: name, twin: c.twin });
    }
  }

  /** A stopped twin twinlayer created from another spec of this container (the primary was recreated with another
   *  image or config) is removed, so ensureTwin creates it anew from this one; its applied seq then describes nothing
   *  and it is restaged. A twin-labelled container without the spec digest (made by hand, or by an older twinlayer)
   *  of another image is refused by ensureTwin instead, and a running twin is left alone (promoted, or an operator's). */
  async #replaceOutdatedTwin(name: string, spec: TwinSpec, halted: Halted): Promise<void> {
    const twin = await this.#o.runtime.twinState(name);
    if (twin.state !== 'stopped' || !twin.isTwin || twin.mounted) return;
    const outdated = twin.specDigest !== null && twin.specDigest !== specDigest(spec);
    if (!outdated || halted()) return;
    this.#o.log.info('spec changed; recreating the stopped twin', { container: name, oldImage: twin.imageId, newImage: spec.imageId });
    await this.#o.runtime.removeContainer(twin.id);
  }

  /** A stopped twin of a spec this host now refuses (its policy changed, or the spec asks for what it refuses) would
   *  start on promotion as a container the policy does not allow: it is removed. A running one is left alone. What
   *  the host lacks (a bind source, a network) never removes a twin: it holds it. */
  async #removeRefusedTwin(name: string): Promise<void> {
    const twin = await this.#o.runtime.twinState(name);
    if (twin.state !== 'stopped' || !twin.isTwin || twin.mounted) return;
    this.#o.log.warn('removing the stopped twin of a refused spec', { container: name, id: twin.id });
    await this.#o.runtime.removeContainer(twin.id);
  }

  /** The spec the newest commit of `name` names: the newest record read, else the staged one; null when none does
   *  (no commit yet, or records written before they named their spec). */
  #namedSpec(state: AppliedState, name: string, c: ContainerRuntimeState): { digest: string; by: string } | null {
    if (c.namedSpec !== null) return { digest: c.namedSpec.digest, by: `record ${c.namedSpec.seq} of generation ${c.namedSpec.generation}` };
    const applied = state.containers[name];
    if (applied?.specDigest !== undefined) return { digest: applied.specDigest, by: `the staged record ${applied.seq} of generation ${applied.generation}` };
    return null;
  }

  /** The spec and whether it is trusted: signed by a key the group trusts, or every spec is (trustUnsignedSpecs); and
   *  the one the newest commit names, when one names a spec. The spec's signature binds it to its key only: without
   *  that check a bucket writer could put back an older signed spec (an older image, other privileges). */
  async #readSpec(name: string, named: { digest: string; by: string } | null): Promise<{ spec: TwinSpec; trusted: boolean }> {
    let read: { spec: unknown; signer: unknown } | undefined;
    try {
      read = await this.#o.bucket.getSignedSpec(name);
    } catch (err) {
      // A spec that does not parse refuses its own container, not the whole poll.
      if (err instanceof BucketObjectInvalidError || err instanceof ObjectTooLargeError) throw new TwinRefusal(`spec.json of ${name}: ${err.message}`);
      throw err;
    }
    if (read === undefined) throw new TwinRefusal(`no spec.json for ${name} in the bucket`);
    const spec = twinSpecSchema.safeParse(read.spec);
    if (!spec.success) throw new TwinRefusal(`spec.json of ${name} is invalid: ${spec.error.issues[0]?.message ?? 'invalid'}`);
    if (spec.data.name !== name) throw new TwinRefusal(`spec.json of ${name} names another container (${JSON.stringify(spec.data.name)})`);
    if (named !== null) {
      const digest = specDigest(spec.data);
      if (digest !== named.digest) {
        throw new SpecNotNamed(`${SPEC_WAIT} ${digest.slice(0, 12)}: spec.json of ${name} is not the spec ${named.by} names (${named.digest.slice(0, 12)}): `
          + 'a new one no commit names yet, or an older spec put back; the twin is kept as it is, and the spec it was made from, until a commit names the spec in the bucket', name);
      }
    }
    const signedByTrustedKey = read.signer !== null;
    return { spec: spec.data, trusted: signedByTrustedKey || this.#o.trustUnsignedSpecs === true };
  }

  /** Marks the container for restaging when its twin is not the container its applied seq was staged into. */
  #checkTwinId(state: AppliedState, name: string, c: ContainerRuntimeState, id: string): void {
    const applied = state.containers[name];
    if (applied === undefined) return;
    if (applied.twinId === undefined) {
      // A state file from before twin ids were recorded: adopt the twin we find (saved with the next commit).
      applied.twinId = id;
      return;
    }
    if (applied.twinId !== id && !c.restage) {
      this.#o.log.warn('twin was replaced; its applied seq no longer describes it, restaging from the journal', { container: name, stagedSeq: applied.seq, oldTwin: applied.twinId, newTwin: id });
      c.restage = true;
    }
  }
}

/** The start of the reason a container waits for a record naming its spec.json. */
const SPEC_WAIT = 'waiting for a record naming spec';

/** Raised by the engine answering (not by the bucket or the spec reader). */
function fromEngine(err: unknown): boolean {
  return err instanceof TwinlayerError && err.code.startsWith('DOCKER_');
}
