// What the standby has staged, per container, kept durably (write + fsync + rename after each staged commit; commits
// of several containers staged at once may share one write).
// A crash anywhere leaves the seq of the last fully staged commit; re-staging from there converges.
import { join } from 'node:path';
import { z } from 'zod';
import { readFileIfExists, writeFileDurable } from '../state/atomic-file.js';

const containerStateSchema = z.object({
  generation: z.number().int().nonnegative(),
  seq: z.number().int().nonnegative(),
  digest: z.string().nullable(),
  stagedAt: z.string().nullable(),
  /** The twin container the seq describes. A twin removed and recreated has an empty upper dir: a seq recorded for
   *  another container id means nothing for it, and it is restaged from the journal. Absent in older files. */
  twinId: z.string().optional(),
  /** The spec the staged record names (CommitRecord.specDigest): after a restart, the spec read must be this one
   *  until a newer record names another. Absent in older files and for records that name none. */
  specDigest: z.string().optional(),
});
export type AppliedContainer = z.infer<typeof containerStateSchema>;

const appliedStateSchema = z.object({
  version: z.literal(1),
  group: z.string(),
  generation: z.number().int().nonnegative(),
  /** Every journal record at or below this seq of `generation` is staged or waits in no queue. */
  cursor: z.number().int().nonnegative(),
  containers: z.record(z.string(), containerStateSchema),
  /** Twins whose upper dir is not trusted (a commit interrupted by a restart of the machine: lines of its undo log
   *  may have been lost), by container: why. Such a twin does not boot until a full checkpoint is staged into it. */
  held: z.record(z.string(), z.string()).optional(),
  /** Containers that only a full checkpoint can move (a refused commit, a journal gap, more commits queued than a
   *  container that cannot stage may hold), by container: why. Their deltas are passed over, and the cursor with
   *  them, until a full checkpoint of theirs is staged. Absent in older files. */
  awaitFull: z.record(z.string(), z.string()).optional(),
});
export type AppliedState = z.infer<typeof appliedStateSchema>;

export class AppliedStateFile {
  readonly path: string;
  constructor(stateDir: string, group: string) {
    this.path = join(stateDir, 'pull', group, 'applied.json');
  }

  async load(group: string): Promise<AppliedState> {
    const text = await readFileIfExists(this.path);
    if (text === null) return { version: 1, group, generation: 0, cursor: 0, containers: {} };
    const parsed = appliedStateSchema.safeParse(JSON.parse(text));
    if (!parsed.success) throw new Error(`applied state ${this.path} is unreadable: ${parsed.error.issues[0]?.message ?? 'invalid'}; move it away to restage from the bucket`);
    return parsed.data;
  }

  #saving: Promise<void> = Promise.resolve();
  /** The save waiting for the one being written, not begun yet. */
  #queued: { state: AppliedState; run: Promise<void> } | null = null;

  /** Saves are serialized and each serializes the state when its turn comes: two containers staged in parallel
   *  used to race their renames, and the older snapshot could land last (the file then lagged the memory). A save
   *  of the same state asked for while another waits for its turn joins it (one write, one fsync, for every
   *  container staged meanwhile): that write serializes the state after each of them changed it, so each caller
   *  resolves only once what it changed is durable, as with a write of its own. */
  save(state: AppliedState): Promise<void> {
    if (this.#queued?.state === state) return this.#queued.run;
    const entry: { state: AppliedState; run: Promise<void> } = { state, run: Promise.resolve() };
    entry.run = this.#saving.then(() => {
      // Begun: a save asked for from now on may have changed the state after it is serialized, so it waits for its own.
      if (this.#queued === entry) this.#queued = null;
      return writeFileDurable(this.path, JSON.stringify(state, null, 1));
    });
    this.#queued = entry;
    this.#saving = entry.run.catch(() => undefined);
    return entry.run;
  }
}
