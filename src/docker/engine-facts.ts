// Decides from `docker info` whether this engine's container upper dirs can be resolved and trusted: the overlay2
// graph driver with native diff, or the containerd image store on containerd's overlayfs snapshotter.
import * as path from 'node:path';
import { EngineUnsupportedError } from './errors.js';
import { infoSchema } from './schemas.js';

/** Where containers' writable layers live: overlay2's `<data root>/overlay2/<id>/diff`, or containerd snapshots. */
export type ImageStore = 'overlay2' | 'containerd';

export interface EngineFacts {
  dataRoot: string;
  driver: string;
  store: ImageStore;
  /** The containerd image store only: what docker info says of dockerd's containerd (the address and namespace from
   *  Docker 27 on; the revision, ContainerdCommit.ID, always), empty strings left out. */
  containerd?: { address?: string; namespace?: string; commit?: string };
  serverVersion: string;
  /** The cgroup namespace a container gets unless it asks: `private` when docker info lists the cgroupns security
   *  option (cgroup v2, or dockerd's default-cgroupns-mode), else the host's. */
  cgroupnsDefault: 'host' | 'private';
}

const CONTAINERD_SNAPSHOTTER = 'io.containerd.snapshotter.v1';

/** Parses a `docker info` response; throws EngineUnsupportedError naming the reason unless the engine runs the
 *  overlay2 graph driver with native overlay diff (no redirect_dir/metacopy), or the containerd image store with the
 *  overlayfs snapshotter (whose mounts are checked for redirect_dir/metacopy at each resolution). */
export function engineFactsFromInfo(raw: unknown): EngineFacts {
  const parsed = infoSchema.safeParse(raw);
  if (!parsed.success) {
    throw new EngineUnsupportedError(`docker info did not parse: ${parsed.error.message}`);
  }
  const info = parsed.data;
  const status = new Map<string, string>();
  for (const pair of info.DriverStatus ?? []) {
    const [key, value] = pair;
    if (key !== undefined && value !== undefined) status.set(key, value);
  }
  const context = { driver: info.Driver, serverVersion: info.ServerVersion };
  if (!path.isAbsolute(info.DockerRootDir) || path.normalize(info.DockerRootDir) !== info.DockerRootDir) {
    throw new EngineUnsupportedError(`DockerRootDir "${info.DockerRootDir}" is not a normalized absolute path`, context);
  }
  const cgroupns = (info.SecurityOptions ?? []).some((o) => o.split(',').includes('name=cgroupns'));
  const common = { dataRoot: info.DockerRootDir, driver: info.Driver, serverVersion: info.ServerVersion, cgroupnsDefault: cgroupns ? 'private' as const : 'host' as const };
  // The containerd image store (Docker 24+ opt-in, 29 default) reports the snapshotter as the driver and keeps the
  // snapshots under containerd's root, where no GraphDriver.UpperDir points: containerd itself is asked for them.
  if (status.get('driver-type') === CONTAINERD_SNAPSHOTTER) {
    if (info.Driver !== 'overlayfs') {
      throw new EngineUnsupportedError(
        `the containerd image store runs the "${info.Driver}" snapshotter; twinlayer handles its overlayfs snapshotter only, whose snapshots are overlay upper dirs`,
        { ...context, hint: 'run dockerd with the overlayfs snapshotter (the default) or the overlay2 graph driver' },
      );
    }
    const containerd: NonNullable<EngineFacts['containerd']> = {};
    if (info.Containerd?.Address) containerd.address = info.Containerd.Address;
    if (info.Containerd?.Namespaces?.Containers) containerd.namespace = info.Containerd.Namespaces.Containers;
    if (info.ContainerdCommit?.ID) containerd.commit = info.ContainerdCommit.ID;
    return { ...common, store: 'containerd', containerd };
  }
  if (info.Driver !== 'overlay2') {
    throw new EngineUnsupportedError(`storage driver is "${info.Driver}"; twinlayer needs overlay2`, context);
  }
  const nativeDiff = status.get('Native Overlay Diff');
  if (nativeDiff !== 'true') {
    // Without native diff overlay2 runs with redirect_dir or metacopy: the upper dir alone no longer holds the whole
    // change (renamed dirs and metadata-only copies point into lower layers).
    throw new EngineUnsupportedError(
      nativeDiff === undefined
        ? 'docker info does not report "Native Overlay Diff"; cannot tell whether redirect_dir/metacopy are on'
        : `"Native Overlay Diff" is ${nativeDiff}: overlayfs redirect_dir or metacopy is on, so upper dirs are not self-contained`,
      { ...context, hint: 'run the engine with overlay redirect_dir and metacopy off' },
    );
  }
  return { ...common, store: 'overlay2' };
}
