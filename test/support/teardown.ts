// What a test fixture started, stopped in reverse order. Every step runs even when an earlier one fails (a dockerd
// left running or a temp dir left behind outlives the test run); the failures are reported together at the end.

export class Teardown {
  readonly #steps: (() => unknown)[] = [];

  /** Runs `step` at teardown, before every step deferred earlier (what was started later is stopped first). */
  defer(step: () => unknown): void {
    this.#steps.push(step);
  }

  /** Runs the deferred steps, last first, each once; throws an AggregateError of all that failed. */
  async run(): Promise<void> {
    const errors: unknown[] = [];
    for (let step = this.#steps.pop(); step !== undefined; step = this.#steps.pop()) {
      try {
        await step();
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, 'cleanup failed');
  }
}

/** Runs `setup`, which defers the stop of whatever it starts; if it fails half-way, what it started so far is
 *  stopped before the failure is rethrown (with the cleanup's failures, if any: the setup's error first). */
export async function setUpOrTearDown<T>(setup: (teardown: Teardown) => Promise<T>): Promise<T> {
  const teardown = new Teardown();
  try {
    return await setup(teardown);
  } catch (err) {
    try {
      await teardown.run();
    } catch (cleanup) {
      const failed: unknown[] = cleanup instanceof AggregateError ? (cleanup.errors as unknown[]) : [cleanup];
      throw new AggregateError([err, ...failed], `setup failed (${err instanceof Error ? err.message : String(err)}), and its cleanup too`, { cause: cleanup });
    }
    throw err;
  }
}
