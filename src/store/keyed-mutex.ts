// One async mutex per key: a check-then-write on a key (a conditional PUT) cannot interleave with another
// write of the same key in this process. The map holds only keys with an operation queued or running, so its
// size is bounded by the operations in flight; an idle key has no entry.
export class KeyedMutex {
  /** Per key: the promise that settles when the last queued operation has finished. */
  readonly #tails = new Map<string, Promise<void>>();

  /** Runs `fn` once every earlier operation on `key` has settled; operations on other keys run in parallel. */
  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key);
    let release!: () => void;
    const done = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous === undefined ? done : previous.then(() => done);
    this.#tails.set(key, tail);
    try {
      if (previous !== undefined) await previous;
      return await fn();
    } finally {
      release();
      // Only the last in the queue removes the entry; a later arrival has replaced the tail already.
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }

  /** Keys with an operation queued or running (for tests: an idle mutex holds nothing). */
  get size(): number {
    return this.#tails.size;
  }
}
