// Keeps a GC run in this process from deleting an object a writer in this process is about to name again (the same
// bytes committed again: a blob or pack the plan found unreferenced). GC dooms its keys before it checks for late
// references; a writer that uploads a doomed key meanwhile rescues it (GC then leaves it) and uploads it without the
// "already there" shortcut; while the deletion itself is in flight, writers of those keys wait for it to end, so no
// upload races a delete of the same key. A writer never waits while GC waits for the writer's commit (no deadlock).
export class DeleteGate {
  #doomed = new Set<string>();
  #rescued = new Set<string>();
  #deleting: Promise<void> | null = null;

  /** Before a write of `key`: true when the key is doomed or was being deleted (the caller must PUT, not skip). */
  async beforeWrite(key: string): Promise<boolean> {
    if (!this.#doomed.has(key)) return false;
    if (this.#deleting === null) {
      this.#rescued.add(key);
      return true;
    }
    await this.#deleting;
    return true;
  }

  /** Marks the keys about to be deleted; returns the deleter, which deletes those not rescued meanwhile. */
  doom(keys: readonly string[]): { run: (del: (keys: string[]) => Promise<void>) => Promise<string[]>; release: () => void } {
    for (const k of keys) this.#doomed.add(k);
    const release = (): void => {
      for (const k of keys) this.#doomed.delete(k);
      for (const k of keys) this.#rescued.delete(k);
    };
    return {
      run: async (del) => {
        const left = keys.filter((k) => !this.#rescued.has(k));
        let end!: () => void;
        this.#deleting = new Promise<void>((resolve) => (end = resolve));
        try {
          await del(left);
        } finally {
          this.#deleting = null;
          release();
          end();
        }
        return left;
      },
      release,
    };
  }
}
