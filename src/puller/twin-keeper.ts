// Keeping the twins: every container with a spec has a stopped twin created from it, of the spec's image, and is
// the container its applied seq describes. Checked every few polls and whenever the head moved.
import { DEFAULT_TWIN_POLICY, isEngineUnavailable, specDigest, TwinSpecRefusedError, twinSpecSchema, type DockerRuntime, type TwinPolicy, type TwinSpec } from '../docker/index.js';
import { TwinlayerError } from '../log/errors.js';
import type { Logger } from '../log/logger.js';
import { BucketObjectInvalidError, ObjectTooLargeError, type Bucket } from '../store/index.js';
import type { AppliedState } from './applied-state.js';
import type { ContainerRuntimeState, ContainerStates } from './container-state.js';
import type { JournalFollower } from './journal-follower.js';

/** A container that cannot be replicated because of its spec (not a fault of the poll). */
class TwinRefusal extends TwinlayerError {
  constructor(reason: string) {
    super('TWIN_SPEC_REFUSED', reason, {});
  }
}

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
}

export class TwinKeeper {
  readonly #o: TwinKeeperOptions;
  readonly #containers: ContainerStates;
  readonly #journal: JournalFollower;
  #pollsSinceCheck = 0;
  /** The engine did not answer at the last check (logged once until it answers again). */
  #engineDown = false;

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
  async ensureTwins(state: AppliedState): Promise<void> {
    const names = new Set([...(await this.#o.bucket.listSpecNames()), ...this.#containers.names()]);
    for (const name of names) {
      const c = this.#containers.get(name);
      // Its twin is being staged into: neither replaced nor re-checked now, but at the next poll.
      if (c.staging) {
        this.checkSoon();
        continue;
      }
      let rereading = false;
      try {
        if (c.spec === null || c.specStale) {
          const read = await this.#readSpec(name, this.#namedSpec(state, name, c));
          rereading = true;
          c.spec = read.spec;
          c.specTrusted = read.trusted;
          c.specStale = false;
          await this.#replaceOutdatedTwin(name, c.spec);
        }
        const twin = await this.#o.runtime.ensureTwin(c.spec, { group: this.#o.group, trusted: c.specTrusted, policy: this.#o.policy ?? DEFAULT_TWIN_POLICY });
        c.refused = null;
        c.twin = twin.state;
        if (twin.state !== 'absent') this.#checkTwinId(state, name, c, twin.id);
        if (this.#engineDown) {
          this.#engineDown = false;
          this.#o.log.info('docker engine answers again; twins checked');
        }
      } catch (err) {
        if (isEngineUnavailable(err)) {
          // Dockerd down or restarting: nothing is wrong with any container. Every twin is kept as it is and checked
          // again at the next poll (logged once, not once per container and poll).
          if (rereading) c.specStale = true;
          this.engineUnavailable(err);
          break;
        }
        // Refusals and Docker failures stop this container only; bucket failures fail the poll.
        if (!(err instanceof TwinRefusal) && !(err instanceof TwinlayerError && err.code.startsWith('DOCKER_'))) throw err;
        if (err instanceof TwinSpecRefusedError) await this.#removeRefusedTwin(name);
        const reason = err.message;
        if (c.refused !== reason) this.#o.log.error('twin refused; this container is not replicated', { container: name, err });
        c.twin = 'refused';
        c.refused = reason;
        c.spec = null;
      }
    }
    const restage = this.#containers.entries().filter(([, c]) => c.restage && !c.staging).map(([n]) => n);
    if (restage.length > 0) await this.#journal.requeue(state, restage);
  }

  /** A stopped twin twinlayer created from another spec of this container (the primary was recreated with another
   *  image or config) is removed, so ensureTwin creates it anew from this one; its applied seq then describes nothing
   *  and it is restaged. A twin-labelled container without the spec digest (made by hand, or by an older twinlayer)
   *  of another image is refused by ensureTwin instead, and a running twin is left alone (promoted, or an operator's). */
  async #replaceOutdatedTwin(name: string, spec: TwinSpec): Promise<void> {
    const twin = await this.#o.runtime.twinState(name);
    if (twin.state !== 'stopped' || !twin.isTwin || twin.mounted) return;
    const outdated = twin.specDigest !== null && twin.specDigest !== specDigest(spec);
    if (!outdated) return;
    this.#o.log.info('spec changed; recreating the stopped twin', { container: name, oldImage: twin.imageId, newImage: spec.imageId });
    await this.#o.runtime.removeContainer(twin.id);
  }

  /** A stopped twin of a spec this host now refuses (its policy changed, a bind source or network went away) would
   *  start on promotion as a container that differs from the primary's: it is removed. A running one is left alone. */
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
        throw new TwinRefusal(`spec.json of ${name} (spec digest ${digest.slice(0, 12)}) is not the spec ${named.by} names (${named.digest.slice(0, 12)}): `
          + 'an older spec put back, or a new one no commit names yet; the twin is kept as it is until a commit names the spec in the bucket');
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
