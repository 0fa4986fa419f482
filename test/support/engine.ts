// The engines tests run against, by kind (src/lab/engine.ts): dockerd 20.10 on overlay2, and dockerd 26 on the
// containerd image store with its own containerd. A DockerRuntime for an engine of either kind.
import type { EngineKind } from '../../src/lab/engine.js';

export { runtimeFor, runtimeOptionsFor, twinlayerEngineEnv } from '../../src/lab/engine-access.js';

export { ENGINE_KINDS } from '../../src/lab/engine.js';
export type { EngineKind } from '../../src/lab/engine.js';

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
