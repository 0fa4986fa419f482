// Decides from `docker info` whether this engine's container upper dirs can be resolved and trusted.
import * as path from 'node:path';
import { EngineUnsupportedError } from './errors.js';
import { infoSchema } from './schemas.js';

export interface EngineFacts {
  dataRoot: string;
  driver: string;
  serverVersion: string;
  /** The cgroup namespace a container gets unless it asks: `private` when docker info lists the cgroupns security
   *  option (cgroup v2, or dockerd's default-cgroupns-mode), else the host's. */
  cgroupnsDefault: 'host' | 'private';
}

const CONTAINERD_SNAPSHOTTER = 'io.containerd.snapshotter.v1';

/** Parses a `docker info` response; throws EngineUnsupportedError naming the reason unless the engine runs the
 *  overlay2 graph driver with native overlay diff (no redirect_dir/metacopy) and not the containerd image store. */
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
  // The containerd image store (Docker 24+ opt-in, 29 default) reports driver "overlayfs" and keeps the
  // snapshots under containerd's root, where GraphDriver.UpperDir does not point.
  if (status.get('driver-type') === CONTAINERD_SNAPSHOTTER) {
    throw new EngineUnsupportedError(
      `the containerd snapshotter image store (driver "${info.Driver}") is in use; twinlayer needs the overlay2 graph driver`,
      { ...context, hint: 'disable the "containerd-snapshotter" feature in daemon.json' },
    );
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
  if (!path.isAbsolute(info.DockerRootDir) || path.normalize(info.DockerRootDir) !== info.DockerRootDir) {
    throw new EngineUnsupportedError(`DockerRootDir "${info.DockerRootDir}" is not a normalized absolute path`, context);
  }
  const cgroupns = (info.SecurityOptions ?? []).some((o) => o.split(',').includes('name=cgroupns'));
  return { dataRoot: info.DockerRootDir, driver: info.Driver, serverVersion: info.ServerVersion, cgroupnsDefault: cgroupns ? 'private' : 'host' };
}
