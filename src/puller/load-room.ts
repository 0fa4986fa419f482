// The room an image load needs. Its layers are written once, uncompressed, into the work dir (where they are checked),
// then `docker load` writes them again into the engine's storage, twice under either image store: overlay2's
// `docker load` untars the whole archive into a temp dir of its data root (<data-root>/tmp unless DOCKER_TMPDIR) before
// it registers each layer as a diff dir; the containerd image store keeps the layer blob in its content store and
// unpacks it into a snapshot.
import type { ImageStore } from '../docker/index.js';

/** A file system's free bytes, and its device (st_dev) to tell whether two dirs share it. */
export interface DiskFree {
  path: string;
  dev: bigint;
  free: number;
}

/** How many times more than the layers' bytes `docker load` writes into the engine's storage. */
export function engineCopies(store: ImageStore): number {
  return ENGINE_COPIES[store];
}

const ENGINE_COPIES: Record<ImageStore, number> = { overlay2: 2, containerd: 2 };

/** Why an image of `layerBytes` (uncompressed) cannot be loaded, or null when it can: the work dir's file system holds
 *  the layers, the engine's holds engineCopies of them; one file system shared holds both. Each keeps `reserve` free.
 *  Pure. */
export function loadRoomProblem(o: { layerBytes: number; reserve: number; store: ImageStore; work: DiskFree; engine: DiskFree }): string | null {
  const k = engineCopies(o.store);
  const what = `the image's layers take ${o.layerBytes} bytes uncompressed (at least) and ${o.reserve} must stay free`;
  if (o.work.dev === o.engine.dev) {
    const need = o.layerBytes * (1 + k) + o.reserve;
    if (o.work.free >= need) return null;
    return `${what}; checked in ${o.work.path} and written ${k} more time(s) by docker load into ${o.engine.path} (${o.store}), on one file system that needs ${need} bytes free but has ${o.work.free}`;
  }
  const workNeed = o.layerBytes + o.reserve;
  if (o.work.free < workNeed) return `${what}; the file system of ${o.work.path} needs ${workNeed} bytes free to check them but has ${o.work.free}`;
  const engineNeed = o.layerBytes * k + o.reserve;
  if (o.engine.free < engineNeed) return `${what}; docker load writes them ${k} time(s) into ${o.engine.path} (${o.store}), whose file system needs ${engineNeed} bytes free but has ${o.engine.free}`;
  return null;
}

/** Why `docker load` of layers already fetched (`layerBytes`, now on disk in the work dir) cannot go on, or null: the
 *  engine's file system, as it is now, holds engineCopies of them and keeps `reserve` free. Before the fetch the room
 *  was judged on each layer's least size (its gzip trailer's ISIZE); a layer over 4 GiB is larger. Pure. */
export function engineRoomProblem(o: { layerBytes: number; reserve: number; store: ImageStore; engine: DiskFree }): string | null {
  const k = engineCopies(o.store);
  const need = o.layerBytes * k + o.reserve;
  if (o.engine.free >= need) return null;
  return `the image's layers, fetched and checked, take ${o.layerBytes} bytes; docker load writes them ${k} time(s) into ${o.engine.path} (${o.store}), whose file system needs ${need} bytes free but has ${o.engine.free}`;
}
