// Docker's containerd image store (Docker 26-28 with the containerd-snapshotter feature, the default of Docker 29):
// a container's writable layer is the containerd snapshot keyed by its id (namespace moby, snapshotter overlayfs).
// Finds the engine's containerd and asks it through the `ctr` client that ships with every containerd package.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { z } from 'zod';
import { EngineUnsupportedError, LayerResolveError } from './errors.js';
import type { EngineFacts } from './engine-facts.js';
import {
  OVERLAYFS_SNAPSHOTTER, SNAPSHOTTER_PLUGIN_TYPE, overlayOptionsFromCtrMounts, parseCtrVersion, parsePluginsDetailed,
} from './containerd-output.js';
import type { OverlayKernelDefaults } from './containerd-output.js';
import type { ErrorContext } from '../log/errors.js';

/** How to reach the engine's containerd; every field overrides what is found from the engine. */
export interface ContainerdSettings {
  /** containerd's socket. Default: docker info's Containerd.Address (Docker 27+), the daemon configuration's
   *  `containerd`, /run/containerd/containerd.sock, /var/run/docker/containerd/containerd.sock (dockerd's own). */
  socketPath?: string;
  /** containerd's root dir (its `root`); the overlayfs snapshots are in `<root>/io.containerd.snapshotter.v1.overlayfs`.
   *  Default: what containerd reports for its overlayfs snapshotter. */
  root?: string;
  /** The `ctr` client. Default `ctr` on PATH. */
  ctrPath?: string;
  /** dockerd's configuration file, read for `containerd` and `containerd-namespace`. Default /etc/docker/daemon.json. */
  daemonConfigPath?: string;
}

/** The engine's containerd as found: where to ask, and where its overlayfs snapshots live. */
export interface ContainerdEndpoint {
  socketPath: string;
  namespace: string;
  /** `<containerd root>/io.containerd.snapshotter.v1.overlayfs`: every dir of a snapshot is under it. */
  snapshotterRoot: string;
  ctrPath: string;
  /** containerd's version (ctr version). */
  version: string;
}

const DEFAULT_SOCKETS = ['/run/containerd/containerd.sock', '/var/run/docker/containerd/containerd.sock'];
const CTR_TIMEOUT_MS = 10_000;
/** Where `ctr snapshots mounts` is told it would mount: it only prints the command, never mounts. */
export const CTR_MOUNT_TARGET = '/twinlayer-not-mounted';

const daemonConfigSchema = z.looseObject({
  containerd: z.string().min(1).optional(),
  'containerd-namespace': z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,75}$/).optional(),
});

class CtrError extends Error {
  readonly stderr: string;
  constructor(message: string, stderr: string, options?: { cause?: unknown }) {
    super(message, options);
    this.stderr = stderr;
  }
}

/** Runs ctr against one containerd; bounded in time and output. */
function ctr(ctrPath: string, socketPath: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(ctrPath, ['--address', socketPath, ...args], { timeout: CTR_TIMEOUT_MS, maxBuffer: 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err !== null) reject(new CtrError(`${ctrPath} ${args.join(' ')}: ${stderr.trim() || err.message}`, stderr, { cause: err }));
      else resolve(stdout);
    });
  });
}

async function readDaemonConfig(file: string, context: ErrorContext): Promise<z.infer<typeof daemonConfigSchema> | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new EngineUnsupportedError(`cannot read the daemon configuration ${file}: ${String(err)}`, context);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new EngineUnsupportedError(`the daemon configuration ${file} is not JSON: ${String(err)}`, context);
  }
  const parsed = daemonConfigSchema.safeParse(raw);
  if (!parsed.success) throw new EngineUnsupportedError(`the daemon configuration ${file} did not parse: ${parsed.error.message}`, context);
  return parsed.data;
}

function unixPath(address: string): string {
  return address.startsWith('unix://') ? address.slice('unix://'.length) : address;
}

/** Finds the engine's containerd (settings first, then what the engine says, then the usual sockets) and checks it is
 *  the engine's (its revision is docker info's ContainerdCommit) and runs the overlayfs snapshotter. Throws
 *  EngineUnsupportedError saying what was tried. */
export async function locateContainerd(facts: EngineFacts, settings: ContainerdSettings): Promise<ContainerdEndpoint> {
  const context: ErrorContext = { driver: facts.driver, serverVersion: facts.serverVersion };
  const ctrPath = settings.ctrPath ?? 'ctr';
  const daemonConfigPath = settings.daemonConfigPath ?? '/etc/docker/daemon.json';
  const daemonConfig = await readDaemonConfig(daemonConfigPath, context);
  const namespace = facts.containerd?.namespace ?? daemonConfig?.['containerd-namespace'] ?? 'moby';
  const candidates: Array<{ socket: string; from: string }> = [];
  if (settings.socketPath !== undefined) {
    candidates.push({ socket: settings.socketPath, from: 'the configuration (containerdSocket)' });
  } else {
    if (facts.containerd?.address) candidates.push({ socket: unixPath(facts.containerd.address), from: 'docker info' });
    if (daemonConfig?.containerd !== undefined) candidates.push({ socket: unixPath(daemonConfig.containerd), from: daemonConfigPath });
    for (const socket of DEFAULT_SOCKETS) candidates.push({ socket, from: 'the default location' });
  }
  const tried: string[] = [];
  for (const { socket, from } of candidates) {
    let version: { version: string; revision: string } | null;
    try {
      version = parseCtrVersion(await ctr(ctrPath, socket, ['version']));
    } catch (err) {
      const enoent = (err as { cause?: NodeJS.ErrnoException }).cause?.code === 'ENOENT';
      if (enoent) throw new EngineUnsupportedError(`the containerd client "${ctrPath}" cannot be run`, { ...context, hint: 'install containerd\'s ctr or set ctrPath' });
      tried.push(`${socket} (${from}): ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
      continue;
    }
    if (version === null) {
      tried.push(`${socket} (${from}): ctr version printed no server version`);
      continue;
    }
    const expected = facts.containerd?.commit;
    if (expected && expected !== version.revision) {
      tried.push(`${socket} (${from}): containerd revision ${version.revision}, the engine's is ${expected}`);
      continue;
    }
    const snapshotterRoot = await snapshotterRootOf(ctrPath, socket, settings.root, context);
    return { socketPath: socket, namespace, snapshotterRoot, ctrPath, version: version.version };
  }
  throw new EngineUnsupportedError(`cannot find the engine's containerd: ${tried.join('; ') || 'no socket to try'}`, {
    ...context, hint: 'set containerdSocket (and containerdRoot) to the containerd dockerd runs on',
  });
}

/** The overlayfs snapshotter's root: `<settings root>/io.containerd.snapshotter.v1.overlayfs`, or what containerd
 *  reports for it; refused when the plugin is missing or did not load. */
async function snapshotterRootOf(ctrPath: string, socket: string, root: string | undefined, context: ErrorContext): Promise<string> {
  if (root !== undefined) {
    if (!path.isAbsolute(root) || path.normalize(root) !== root || root.endsWith('/')) {
      throw new EngineUnsupportedError(`containerdRoot "${root}" is not a normalized absolute path`, context);
    }
    return path.join(root, `${SNAPSHOTTER_PLUGIN_TYPE}.${OVERLAYFS_SNAPSHOTTER}`);
  }
  let plugins;
  try {
    plugins = parsePluginsDetailed(await ctr(ctrPath, socket, ['plugins', 'ls', '--detailed', `type==${SNAPSHOTTER_PLUGIN_TYPE}`]));
  } catch (err) {
    throw new EngineUnsupportedError(`cannot read containerd's snapshotters at ${socket}: ${err instanceof Error ? err.message : String(err)}`, context);
  }
  const overlay = plugins.find((p) => p.id === OVERLAYFS_SNAPSHOTTER);
  if (overlay === undefined) throw new EngineUnsupportedError(`containerd at ${socket} has no overlayfs snapshotter`, context);
  if (overlay.error !== null) throw new EngineUnsupportedError(`containerd's overlayfs snapshotter did not load: ${overlay.error}`, context);
  const dir = overlay.root;
  if (dir === null || !path.isAbsolute(dir) || path.normalize(dir) !== dir || dir.endsWith('/')) {
    throw new EngineUnsupportedError(`containerd reports no usable root for its overlayfs snapshotter (${String(dir)})`, { ...context, hint: 'set containerdRoot' });
  }
  return dir;
}

/** The overlay options containerd would mount a container's snapshot with (`ctr snapshots mounts`, nothing is
 *  mounted); null when containerd has no such snapshot (the container is gone). */
export async function snapshotOverlayOptions(endpoint: ContainerdEndpoint, id: string, context: ErrorContext): Promise<string | null> {
  if (!/^[0-9a-f]{64}$/.test(id)) throw new LayerResolveError(`container id "${id}" is not 64 hex digits`, context);
  let out: string;
  try {
    out = await ctr(endpoint.ctrPath, endpoint.socketPath, ['--namespace', endpoint.namespace, 'snapshots', '--snapshotter', OVERLAYFS_SNAPSHOTTER, 'mounts', CTR_MOUNT_TARGET, id]);
  } catch (err) {
    if (err instanceof CtrError && /does not exist: not found/.test(err.stderr)) return null;
    throw new LayerResolveError(`containerd did not give the snapshot's mounts: ${err instanceof Error ? err.message : String(err)}`, { ...context, containerd: endpoint.socketPath }, { cause: err });
  }
  try {
    return overlayOptionsFromCtrMounts(out, CTR_MOUNT_TARGET);
  } catch (err) {
    throw new LayerResolveError(`ctr snapshots mounts: ${err instanceof Error ? err.message : String(err)}`, { ...context, containerd: endpoint.socketPath });
  }
}

/** The overlay module's defaults (Y/N files under /sys/module/overlay/parameters); a missing one refuses the engine:
 *  without it, whether a mount uses redirect_dir or metacopy cannot be told. */
export async function overlayKernelDefaults(dir = '/sys/module/overlay/parameters'): Promise<OverlayKernelDefaults> {
  const flag = async (name: string): Promise<boolean> => {
    let text: string;
    try {
      text = (await readFile(path.join(dir, name), 'utf8')).trim();
    } catch (err) {
      throw new EngineUnsupportedError(`cannot read the overlay module's ${name} default (${path.join(dir, name)}): ${String(err)}`);
    }
    if (text !== 'Y' && text !== 'N') throw new EngineUnsupportedError(`the overlay module's ${name} default is "${text}", not Y or N`);
    return text === 'Y';
  };
  return { redirectDir: await flag('redirect_dir'), metacopy: await flag('metacopy') };
}

/** The bytes of one blob of containerd's content store (`ctr content get`): a manifest or an index, small. */
export function contentBytes(endpoint: ContainerdEndpoint, digest: string): Promise<Buffer> {
  if (!/^sha256:[0-9a-f]{64}$/.test(digest)) return Promise.reject(new Error(`not a digest: ${digest}`));
  return new Promise((resolve, reject) => {
    execFile(endpoint.ctrPath, ['--address', endpoint.socketPath, '--namespace', endpoint.namespace, 'content', 'get', digest],
      { timeout: CTR_TIMEOUT_MS, maxBuffer: 4 * 1024 * 1024, encoding: 'buffer' }, (err, stdout, stderr) => {
        if (err !== null) reject(new CtrError(`ctr content get ${digest}: ${stderr.toString('utf8').trim() || err.message}`, stderr.toString('utf8'), { cause: err }));
        else resolve(stdout);
      });
  });
}
