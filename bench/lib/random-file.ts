// Incompressible test data for the bulk benchmarks: the same bytes for the same seed, other bytes for another.
import { createCipheriv } from 'node:crypto';
import { open } from 'node:fs/promises';

const MiB = 1024 * 1024;

/** Writes `size` pseudo-random bytes (AES-256-CTR of zeros keyed by `seed`) to `path`, opened with `flags`
 *  ('w' replaces it, 'a' appends). They do not compress: gzip and the chunk packs cannot shrink them. */
export async function fillRandom(path: string, size: number, seed: string, flags = 'w'): Promise<void> {
  const cipher = createCipheriv('aes-256-ctr', Buffer.alloc(32, seed), Buffer.alloc(16));
  const fh = await open(path, flags);
  try {
    const zeros = Buffer.alloc(4 * MiB);
    for (let done = 0; done < size; done += zeros.length) await fh.write(cipher.update(zeros.subarray(0, Math.min(zeros.length, size - done))));
  } finally {
    await fh.close();
  }
}
