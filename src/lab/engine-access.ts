// How twinlayer reaches a lab engine of either kind (engine.ts): the docker unit's options (its socket and mounts,
// and for the containerd store its containerd: the socket and ctr as the harness started them, the engine's own
// daemon.json), and the same as the environment of a `twinlayer` process.
import { join } from 'node:path';
import { DockerRuntime, type DockerRuntimeOptions } from '../docker/index.js';
import type { Engine } from './engine.js';

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

/** The settings a `twinlayer` process on `engine` needs: its socket, and the containerd of a containerd engine. */
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
