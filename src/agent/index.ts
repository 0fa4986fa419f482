// agent: one process per host, primary or standby, switching by itself (DESIGN.md "Roles, promotion, fencing").
export { Agent, type AgentOptions, type NotifyAnswer } from './agent.js';
export { AgentHookHandler } from './hook-handler.js';
export { Fence, FencedError } from './fence.js';
export { newestOwnership, ownershipOf, successorOf, type Ownership } from './ownership.js';
export { readVrrpStateFile, VrrpIntent, type VrrpEvent, type VrrpState } from './vrrp-intent.js';
export type { AgentStatus, ClaimState, DemotionReport, PromotionOutcome, PromotionReport, Role } from './types.js';
