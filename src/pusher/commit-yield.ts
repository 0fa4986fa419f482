// The image shipper gives way to commits. A ship reads a whole image (`docker save`: the engine tars the layers,
// this process hashes and gzips every byte) on the cores the commit path needs: on the 2-core bench host a ship of
// the 107 MB image took 17 s, and the 4 KiB changes made meanwhile reached the bucket in 65 ms (median, max 859)
// against 38-41 ms for the other images, whose ship was over sooner. So the ship's stream waits, chunk by chunk,
// while any container has a change collected or a commit in flight; the engine then waits on its pipe too.
//
// A container written without pause would hold a ship back for good: a wait ends after maxWaitMs all the same, and
// the ship then runs runMs without looking, so it keeps at least runMs / (maxWaitMs + runMs) of its pace.
import { pipeline, Transform, type Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';

export interface CommitYieldOptions {
  /** Whether a change is being collected or a commit shipped now. */
  busy: () => boolean;
  /** How often a waiting ship looks again. Default 5 ms. */
  pollMs?: number;
  /** The longest wait at a time. Default 1000 ms. */
  maxWaitMs?: number;
  /** How long a ship runs without looking after a wait that reached maxWaitMs. Default 250 ms. */
  runMs?: number;
  now?: () => number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export class CommitYield {
  readonly #busy: () => boolean;
  readonly #pollMs: number;
  readonly #maxWaitMs: number;
  readonly #runMs: number;
  readonly #now: () => number;
  readonly #sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Until then the ship runs without looking (it waited maxWaitMs). */
  #freeUntil = -Infinity;

  constructor(o: CommitYieldOptions) {
    this.#busy = o.busy;
    this.#pollMs = o.pollMs ?? 5;
    this.#maxWaitMs = o.maxWaitMs ?? 1000;
    this.#runMs = o.runMs ?? 250;
    // A monotonic clock: a step of the wall clock must not hold the ship for the step's length.
    this.#now = o.now ?? (() => performance.now());
    this.#sleep = o.sleep ?? (async (ms, signal) => { await sleep(ms, undefined, signal === undefined ? {} : { signal }); });
    for (const [name, v] of Object.entries({ pollMs: this.#pollMs, maxWaitMs: this.#maxWaitMs, runMs: this.#runMs })) {
      if (!Number.isSafeInteger(v) || v < 1) throw new TypeError(`Expected \`${name}\` to be a positive integer, got ${String(v)}`);
    }
  }

  /** null when the ship may go on at once (nothing to await: the common case costs no promise per chunk); else a
   *  promise that resolves when no commit is under way or the wait reached maxWaitMs. */
  turn(signal?: AbortSignal): Promise<void> | null {
    if (this.#now() < this.#freeUntil || !this.#busy()) return null;
    return this.#wait(signal);
  }

  async #wait(signal: AbortSignal | undefined): Promise<void> {
    const start = this.#now();
    while (this.#busy()) {
      if (this.#now() - start >= this.#maxWaitMs) {
        this.#freeUntil = this.#now() + this.#runMs;
        return;
      }
      await this.#sleep(this.#pollMs, signal);
    }
  }

  /** `source` passed on chunk by chunk, each once it is this ship's turn. */
  pace(source: Readable | NodeJS.ReadableStream, signal?: AbortSignal): Readable {
    const paced = new Transform({
      transform: (chunk: Buffer, _enc, cb) => {
        const wait = this.turn(signal);
        if (wait === null) cb(null, chunk);
        else wait.then(() => cb(null, chunk), cb);
      },
    });
    // pipeline: the source's error ends the paced stream with it, and a reader that stops early ends the source
    // (the engine's save). The reader sees any error itself.
    return pipeline(source, paced, () => undefined);
  }
}
