// The tap of a long stream read from a socket (a `docker save`): its bytes are copied into blocks of their own, and V8
// collects its young generation as each block is passed on, so that the socket's reads are freed then, not when V8
// gets to them.
//
// Why: each socket read is a 64 KiB block from glibc's main heap (below the daemons' 128 KiB mmap threshold,
// bin/twinlayer.js), freed only when V8 collects the Buffer over it. A chunk costs V8 a small object, so nothing fills
// the young generation while the bytes pour in: V8 collects when the blocks outside it pass its own limit, tens of MB
// later. Those blocks spread the brk heap, the sync's own small allocations land between them, and the holes stay
// resident once freed: the idle pusher kept a 30-32 MB brk heap after shipping the 46 MB image, 7 MB of it in use
// (malloc_trim(0) through gdb gave back 31 MB). Collected young, a read must not be held by what comes after (the tar
// parser's entries are views of the chunks it is given, and a chunk still held at a collection is promoted, freed only
// by a full one): hence the copy, into 1 MiB blocks that are mapped on their own and unmapped when freed.
// bench/results/2026-12-08-rss5-probe.md has the figures. A young collection with a 4 MB semi-space costs ~0.1-1 ms
// a MiB; the MiB itself is hashed and gzip'd in ~10-20 ms.
import { Transform } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type Gc = (opts: { type: 'minor' }) => void;
let collect: Gc | null | undefined;

/** V8's gc() with its young-generation option, exposed to a context of its own (not to the process's globals):
 *  null when this V8 refuses. */
function youngCollector(): Gc | null {
  if (collect === undefined) {
    try {
      setFlagsFromString('--expose-gc');
      const gc: unknown = runInNewContext('gc');
      collect = typeof gc === 'function' ? (gc as Gc) : null;
    } catch {
      collect = null;
    }
  }
  return collect;
}

/** The same bytes, copied into blocks of `blockBytes` (the last one shorter), each a fresh allocation (mapped on its
 *  own at 1 MiB); V8 collects its young generation as each block is passed on. `onChunk` runs for each chunk read
 *  (an idle timer). */
export function readRelease(blockBytes: number, onChunk?: () => void): Transform {
  if (!Number.isSafeInteger(blockBytes) || blockBytes < 1) throw new TypeError(`Expected \`blockBytes\` to be a positive integer, got ${String(blockBytes)}`);
  const gc = youngCollector();
  let block: Buffer | null = null;
  let used = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      onChunk?.();
      let at = 0;
      while (at < chunk.length) {
        block ??= Buffer.allocUnsafeSlow(blockBytes);
        const n = chunk.copy(block, used, at);
        used += n;
        at += n;
        if (used === blockBytes) {
          this.push(block);
          block = null;
          used = 0;
          gc?.({ type: 'minor' });
        }
      }
      cb();
    },
    flush(cb) {
      if (block !== null && used > 0) this.push(block.subarray(0, used));
      block = null;
      cb();
    },
  });
}
