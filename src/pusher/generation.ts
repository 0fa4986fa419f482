// Which generation this pusher writes: it continues the newest one when it was that generation's writer,
// else it opens the next one (a promotion), whose first commit per container is a full checkpoint.
import type { Bucket, Generation, Head } from '../store/index.js';
import { recoverHead } from '../store/index.js';

export interface WriterPosition {
  generation: Generation;
  head: Head | null;
  /** True when this pusher opened a new generation: no earlier shipped state counts. */
  opened: boolean;
}

export async function chooseGeneration(bucket: Bucket, hostId: string): Promise<WriterPosition> {
  // The newest generation the group made (signed claim or head): a forged one is passed over, never continued.
  const newest = await bucket.newestGeneration();
  if (newest !== null) {
    const head = await recoverHead(bucket, newest);
    if (head !== null && head.writer === hostId) return { generation: newest, head, opened: false };
  }
  return { generation: ((newest ?? 0) + 1) as Generation, head: null, opened: true };
}
