// The engines tests run against, by kind (src/lab/engine.ts): dockerd 20.10 on overlay2, and dockerd 26 on the
// containerd image store with its own containerd. A DockerRuntime for an engine of either kind.
import { join } from 'node:path';
import { DockerRuntime } from '../../src/docker/index.js';
import type { DockerRuntimeOptions } from '../../src/docker/index.js';
import type { Engine } from '../../src/lab/engine.js';

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
