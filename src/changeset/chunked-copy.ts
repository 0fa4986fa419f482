// Pusher side: a file larger than the chunking threshold goes into the tar as an empty body naming its digest
// (TWINLAYER.chunked), and its content as content-defined chunks (chunker.ts). Chunks the bucket is not known to hold
// are spooled to the build's spool dir, one file a digest, for the pusher to upload before it publishes.
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { Chunker } from './chunker.js';
import type { ChunkedFile } from './chunk-list.js';
import type { Fingerprint } from './racy.js';
import { readFileStable } from './stable-read.js';
import type { TarEntry } from './tar-format.js';
import type { TarFileWriter } from './tar-writer.js';
import type { Cand } from './upper-node.js';

export interface ChunkingOptions {
  /** Regular files of more than this many bytes ship as chunks. */
  thresholdBytes: number;
  /** Whether the bucket is known to hold this chunk (by digest): such chunks are not spooled for upload. */
  known: (digest: string) => boolean;
}

/** The chunks spooled by one build: digest -> spool file. */
export type Spool = Map<string, string>;

/** Writes `base` as a chunked entry; null when the file changed while being read (torn: nothing written). */
export async function copyChunked(
  writer: TarFileWriter, abs: string, c: Cand, base: TarEntry, spoolDir: string, spool: Spool, known: (d: string) => boolean, print?: Fingerprint,
): Promise<ChunkedFile | null> {
  const whole = createHash('sha256');
  const chunker = new Chunker(async (chunk, parts) => {
    if (spool.has(chunk.digest) || known(chunk.digest)) return;
    const file = join(spoolDir, chunk.digest);
    const fh = await open(file, 'w', 0o600);
    try {
      await fh.writev([...parts]);
    } finally {
      await fh.close();
    }
    spool.set(chunk.digest, file);
  });
  const ok = await readFileStable(abs, c.st, () => Promise.resolve(), async (buf) => {
    print?.update(buf);
    whole.update(buf);
    await chunker.update(buf);
  });
  if (!ok) return null;
  const chunks = await chunker.end();
  const digest = whole.digest('hex');
  await writer.writeEntry({ ...base, type: 'file', size: 0, chunked: digest });
  // The tar path (base.path): the list names entries as the changeset does.
  return { path: base.path, size: Number(c.st.size), digest, chunks: chunks.map((k) => [k.digest, k.size] as const) };
}
