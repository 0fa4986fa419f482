export { Pusher, type PusherOptions } from './pusher.js';
export { BurstCollector, mergeScopes, type Burst, type BurstScope } from './burst.js';
export type { ReplicatorStatus } from './replicator.js';
export { chooseGeneration, type WriterPosition } from './generation.js';
export { ShippedStateStore } from './shipped-state.js';
