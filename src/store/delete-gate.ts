// Keeps a GC run in this process from deleting an object a writer in this process is about to name again (the same
// bytes committed again: a blob or pack the plan found unreferenced). GC dooms its keys before it checks for late
// references; a writer that uploads a doomed key meanwhile rescues it (GC then leaves it) and uploads it without the
// "already there" shortcut; while the deletion itself is in flight, writers of those keys wait for it to end, so no
// upload races a delete of the same key. A writer never waits while GC waits for the writer's commit (no deadlock).
// Several runs may hold dooms at once (`twinlayer gc` in a process that also runs the loop, a test): each doom is its
// own, a write rescues its key from every doom not deleting yet and waits for every one that is.

/** Rounds of waiting one write does at most: each waits for one deletion in flight, and a deletion ends. */
const MAX_WAITS = 10_000;

interface Doom {
  keys: ReadonlySet<string>;
  rescued: Set<string>;
  /** Set while its deletion is in flight. */
  deleting: Promise<void> | null;
}

export class DeleteGate {
  readonly #dooms = new Set<Doom>();

  /** Before a write of `key`: true when the key is doomed or was being deleted (the caller must PUT, not skip). */
  async beforeWrite(key: string): Promise<boolean> {
    let doomed = false;
    for (let round = 0; round < MAX_WAITS; round++) {
      const deleting = [...this.#dooms].find((d) => d.keys.has(key) && d.deleting !== null);
      if (deleting === undefined) {
        // Rescued from every doom that holds it; none of them is deleting now, and a run that starts deleting leaves
        // rescued keys alone.
        for (const d of this.#dooms) {
          if (!d.keys.has(key)) continue;
          d.rescued.add(key);
          doomed = true;
        }
        return doomed;
      }
      doomed = true;
      await deleting.deleting;
    }
    throw new Error(`DeleteGate: a write of ${key} waited for ${MAX_WAITS} deletions`);
  }

  /** Marks the keys about to be deleted; returns the deleter, which hands `del` those not rescued meanwhile and
   *  returns what `del` says it deleted. Each doom runs once; release() (also after run) drops it. */
  doom(keys: readonly string[]): { run: (del: (keys: string[]) => Promise<string[]>) => Promise<string[]>; release: () => void } {
    const doom: Doom = { keys: new Set(keys), rescued: new Set(), deleting: null };
    this.#dooms.add(doom);
    const release = (): void => void this.#dooms.delete(doom);
    return {
      run: async (del) => {
        if (!this.#dooms.has(doom)) throw new Error('DeleteGate: this doom was released or has run');
        const left = keys.filter((k) => !doom.rescued.has(k));
        let end!: () => void;
        doom.deleting = new Promise<void>((resolve) => (end = resolve));
        try {
          return await del(left);
        } finally {
          release();
          end();
        }
      },
      release,
    };
  }
}
