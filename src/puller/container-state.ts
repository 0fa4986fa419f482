// What the puller keeps per container while it runs (the durable part is in applied-state.ts).
import type { TwinSpec } from '../docker/index.js';
import type { CommitRecord } from '../store/index.js';
import type { ContainerStatus } from './reports.js';

export interface ContainerRuntimeState {
  queue: CommitRecord[];
  /** Why staging stopped for this container (a journal gap, a running twin); null when flowing. */
  blocked: string | null;
  /** Why this container is not replicated at all (no or bad spec, a same-named container that is not its twin or
   *  runs another image, image absent); examined again every poll so an operator's fix is picked up. */
  refused: string | null;
  /** The parsed spec.json; re-read while the container is refused and after every full commit (the primary puts
   *  its spec before the first, full, commit of a new or recreated container and of a new generation). */
  spec: TwinSpec | null;
  /** The spec is trusted (its privileged fields may be honoured): see TwinKeeper's spec reader. */
  specTrusted: boolean;
  specStale: boolean;
  /** The spec the newest record read of this container names (CommitRecord.specDigest); null when none named one.
   *  Only that spec is used: an older signed spec put back at spec.json is refused. */
  namedSpec: { digest: string; seq: number; generation: number } | null;
  twin: ContainerStatus['twin'];
  lastError: string | null;
  /** The twin is not the container the applied seq describes (removed and recreated): rebuild its queue. */
  restage: boolean;
  /** The explained gap at the queue head: looked up once per blocked record, not once per poll. */
  gap: { seq: number; reason: string } | null;
  /** A task of the stager is working on this container: the keeper leaves its twin alone meanwhile. */
  staging: boolean;
  /** The commit at the queue head whose changeset was refused (until a commit is staged again). */
  refusedCommit: { seq: number; digest: string; reason: string } | null;
  /** What this host lacks for the twin (a bind source, a device, a network, the engine's answer), each since when:
   *  the twin is held as it is (kept with its staged data, none created), checked again every poll. */
  hostProblems: HostProblem[];
  /** The commit that waits for free disk space, as logged: once per commit (the free bytes change at every try). */
  roomWait: { generation: number; seq: number } | null;
  /** Why its twin was not started at the last promotion (a bind source gone since it was created). */
  notStarted: string | null;
  /** When the newest record of this container read from the journal, and the newest full one, were published
   *  (epoch ms; null until this process has read one): the commit and checkpoint ages of the metrics. */
  lastCommitAt: number | null;
  lastFullAt: number | null;
}

export interface HostProblem {
  problem: string;
  since: string;
  /** What is being done about it now (the image loader's state), shown in the status: it changes often, so it is no
   *  part of the problem a change of which is logged. */
  detail?: string;
}

/** Every container the puller has heard of (journal, specs), created on first mention. */
export class ContainerStates {
  readonly #map = new Map<string, ContainerRuntimeState>();

  get(name: string): ContainerRuntimeState {
    let c = this.#map.get(name);
    if (!c) {
      c = { queue: [], blocked: null, refused: null, spec: null, specTrusted: false, specStale: false, namedSpec: null, twin: 'absent', lastError: null, restage: false, gap: null, staging: false, refusedCommit: null, hostProblems: [], roomWait: null, notStarted: null, lastCommitAt: null, lastFullAt: null };
      this.#map.set(name, c);
    }
    return c;
  }

  names(): string[] {
    return [...this.#map.keys()];
  }

  entries(): [string, ContainerRuntimeState][] {
    return [...this.#map.entries()];
  }

  values(): ContainerRuntimeState[] {
    return [...this.#map.values()];
  }

  /** The containers in place, without the copy entries() makes: what every poll walks (200 containers, four polls a
   *  second), where a copy of each a poll was garbage to collect. Not for a walk that awaits between steps. */
  each(): IterableIterator<[string, ContainerRuntimeState]> {
    return this.#map.entries();
  }
}
