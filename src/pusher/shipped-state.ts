// What the pusher shipped per container, kept durably so a restart ships only the difference.
// Two files per container: `<name>.json` (committed: matches the record at lastSeq) and `<name>.pending.json`
// (written before a record is published). After a crash between the two, the bucket decides which one is true.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { SerializedIndex } from '../changeset/index.js';
import { readFileIfExists, writeFileDurable } from '../state/atomic-file.js';

const serializedIndexSchema = z.object({ version: z.literal(1), entries: z.array(z.tuple([z.string(), z.unknown()])) });

const shippedFileSchema = z.object({
  version: z.literal(1),
  generation: z.number().int().positive(),
  lastSeq: z.number().int().nonnegative(),
  digest: z.string().regex(/^[0-9a-f]{64}$/).nullable(),
  /** The container the index describes: a container removed and run again under the same name has a new upper
   *  dir, and a state of the old one must not make its first commit a delta. Absent in older files. */
  containerId: z.string().optional(),
  /** When the newest full checkpoint of the container was published (ISO), for the checkpoint-age metric across
   *  restarts. Absent in older files. */
  lastFullAt: z.string().optional(),
  /** The deltas published since that checkpoint: how many, and their weight (checkpoint-policy.ts deltaWeight), for
   *  the next checkpoint's decision across restarts. Absent in older files (counted from the next delta on). */
  sinceFull: z.object({ deltas: z.number().int().nonnegative(), bytes: z.number().nonnegative() }).optional(),
  shipped: serializedIndexSchema,
});
export type ShippedFile = z.infer<typeof shippedFileSchema>;

/** A shipped index as JSON text. A commit writes it twice (pending, then committed) and it grows with every file the
 *  container keeps, so it is serialized once per commit. */
export type ShippedText = string & { readonly shippedText: unique symbol };
export function shippedText(index: SerializedIndex): ShippedText {
  return JSON.stringify(index) as ShippedText;
}

export class ShippedStateStore {
  readonly #dir: string;
  constructor(stateDir: string, group: string) {
    this.#dir = join(stateDir, 'push', group);
  }

  #file(name: string, pending: boolean): string {
    return join(this.#dir, `${name}${pending ? '.pending' : ''}.json`);
  }

  async load(name: string, pending: boolean): Promise<ShippedFile | null> {
    const text = await readFileIfExists(this.#file(name, pending));
    if (text === null) return null;
    const parsed = shippedFileSchema.safeParse(JSON.parse(text));
    // A state file we cannot read only costs a full sync; it never blocks the pusher.
    return parsed.success ? parsed.data : null;
  }

  async save(name: string, pending: boolean, state: Omit<ShippedFile, 'version' | 'shipped'>, shipped: ShippedText): Promise<void> {
    const head = JSON.stringify({ version: 1, ...state });
    await writeFileDurable(this.#file(name, pending), `${head.slice(0, -1)},"shipped":${shipped}}`);
  }

  async clearPending(name: string): Promise<void> {
    await rm(this.#file(name, true), { force: true });
  }
}
