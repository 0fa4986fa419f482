// The role this host last settled in, kept durably: when the bucket cannot be asked at start, it says whether this
// host was the primary of its generation (resume) or not (stay down).
import { join } from 'node:path';
import { z } from 'zod';
import { readFileIfExists, writeFileDurable } from '../state/atomic-file.js';

const roleFileSchema = z.strictObject({
  version: z.literal(1),
  role: z.enum(['primary', 'standby']),
  /** The generation written (primary) or followed (standby); 0 for none. */
  generation: z.number().int().min(0),
  updatedAt: z.iso.datetime(),
});
export type RoleFile = z.infer<typeof roleFileSchema>;

export class RoleFileStore {
  readonly path: string;
  constructor(stateDir: string, group: string) {
    this.path = join(stateDir, 'agent', group, 'role.json');
  }

  async load(): Promise<RoleFile | null> {
    const text = await readFileIfExists(this.path);
    if (text === null) return null;
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
    const parsed = roleFileSchema.safeParse(json);
    // Unreadable means unknown: the bucket (or VRRP) decides, nothing is resumed on its word.
    return parsed.success ? parsed.data : null;
  }

  async save(role: RoleFile['role'], generation: number): Promise<void> {
    await writeFileDurable(this.path, JSON.stringify({ version: 1, role, generation, updatedAt: new Date().toISOString() }) + '\n');
  }
}
