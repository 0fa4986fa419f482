// The engines tests run against, by kind (src/lab/engine.ts): dockerd 20.10 on overlay2, and dockerd 26 on the
// containerd image store with its own containerd. A DockerRuntime for an engine of either kind.
import { join } from 'node:path';
import { DockerRuntime } from '../../src/docker/index.js';
import type { DockerRuntimeOptions } from '../../src/docker/index.js';
import type { Engine, EngineKind } from '../../src/lab/engine.js';

export { ENGINE_KINDS } from '../../src/lab/engine.js';
export type { EngineKind } from '../../src/lab/engine.js';

/** The options a DockerRuntime of `engine` is made with: its socket and mounts, and for the containerd store, its
 *  containerd (the socket and ctr as the harness started them, the engine's own daemon.json). */
export function runtimeOptionsFor(engine: Engine, extra: Omit<Partial<DockerRuntimeOptions>, 'socketPath'> = {}): DockerRuntimeOptions {
  const ctd = engine.containerd;
  return {
    socketPath: engine.socketPath,
    mountInfoPath: engine.mountInfoPath,
    ...(ctd === null ? {} : { containerd: { socketPath: ctd.socketPath, ctrPath: ctd.ctrPath, daemonConfigPath: join(engine.baseDir, 'daemon.json') } }),
    ...extra,
  };
}

export function runtimeFor(engine: Engine, extra: Omit<Partial<DockerRuntimeOptions>, 'socketPath'> = {}): DockerRuntime {
  return new DockerRuntime(runtimeOptionsFor(engine, extra));
}

/** The engine pairs (primary → standby) the end-to-end tests run for: one store on both hosts, and a standby on the
 *  containerd store behind a primary on overlay2 (one host upgraded first). */
export const ENGINE_PAIRS: ReadonlyArray<readonly [EngineKind, EngineKind]> = [
  ['overlay2', 'overlay2'],
  ['containerd', 'containerd'],
  ['overlay2', 'containerd'],
];

/** `20.10/overlay2 → 26/containerd`, for test names. */
export function pairName([a, b]: readonly [EngineKind, EngineKind]): string {
  const label = (k: EngineKind): string => (k === 'overlay2' ? '20.10/overlay2' : '26/containerd');
  return `${label(a)} → ${label(b)}`;
}

/** The settings a `twinlayer` process on `engine` needs beyond its socket: the containerd of a containerd engine. */
export function twinlayerEngineEnv(engine: Engine): Record<string, string> {
  const ctd = engine.containerd;
  const env: Record<string, string> = { TWINLAYER_DOCKER_SOCKET: engine.socketPath };
  if (ctd !== null) {
    env['TWINLAYER_CONTAINERD_SOCKET'] = ctd.socketPath;
    env['TWINLAYER_CTR_PATH'] = ctd.ctrPath;
    env['TWINLAYER_DOCKER_DAEMON_CONFIG'] = join(engine.baseDir, 'daemon.json');
  }
  return env;
}
