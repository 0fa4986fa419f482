// A benchmark run is many parts; one that fails is reported and the run goes on to the next, so that what was
// measured is kept and the report names what is missing.

/** Runs one part: its value, or null when it threw, after `failed` has been told which part and why. */
export async function attemptPart<T>(what: string, work: () => Promise<T>, failed: (what: string, message: string) => void): Promise<T | null> {
  try {
    return await work();
  } catch (err) {
    failed(what, err instanceof Error ? err.message : String(err));
    return null;
  }
}
