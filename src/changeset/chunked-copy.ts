// Pusher side: a file larger than the chunking threshold goes into the tar as an empty body naming its digest
// (TWINLAYER.chunked), and its content as content-defined chunks (chunker.ts). Chunks the bucket is not known to hold
// go to the build's chunk sink as they are cut: the pusher's packs them and uploads the packs while the build goes on
// (src/store/pack-store.ts); the commit is published only once the sink has finished.
import { createHash } from 'node:crypto';
import { Chunker } from './chunker.js';
import type { ChunkedFile, ChunkPlace } from './chunk-list.js';
import type { Fingerprint } from './racy.js';
import { readFileStable } from './stable-read.js';
import type { TarEntry } from './tar-format.js';
import type { TarFileWriter } from './tar-writer.js';
import type { Cand } from './upper-node.js';

/** Where one build's new chunks go. */
export interface ChunkSink {
  /** Whether the chunk need not be added: the bucket is known to hold it, or a build is uploading it. */
  known(digest: string): boolean | Promise<boolean>;
  /** Takes a chunk (its bytes, in parts) to upload; adding one twice stores it once. */
  add(digest: string, parts: readonly Buffer[]): Promise<void>;
  /** Waits for every upload and returns the place of each chunk of `files` (new or held before); throws when one
   *  failed or a chunk has no place (the commit must not be published then: a new build spools them again). */
  finish(files: readonly ChunkedFile[]): Promise<Map<string, ChunkPlace>>;
  /** Drops what is not uploaded yet and waits for what is in flight. */
  abandon(): Promise<void>;
}

export interface ChunkingOptions {
  /** Regular files of more than this many bytes ship as chunks. */
  thresholdBytes: number;
  /** A sink for one build. */
  openSink: () => ChunkSink;
}

/** Writes `base` as a chunked entry; null when the file changed while being read (torn: nothing written). */
export async function copyChunked(
  writer: TarFileWriter, abs: string, c: Cand, base: TarEntry, sink: ChunkSink, print?: Fingerprint,
): Promise<ChunkedFile | null> {
  const whole = createHash('sha256');
  const chunker = new Chunker(async (chunk, parts) => {
    if (await sink.known(chunk.digest)) return;
    await sink.add(chunk.digest, parts);
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
