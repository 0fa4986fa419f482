// vrrp-hook: the endpoint keepalived's notify script calls; finalize + boot; status, health and metrics routes.
export type {
  ContainerFinalize,
  ContainerStart,
  ContainerStatus,
  FinalizeReport,
  HandlerHookOptions,
  HookOptions,
  PromoterHookOptions,
  VrrpHandler,
  Promoter,
  StartReport,
  StatusReport,
} from './types.js';
export type { BootOutcome, BootPhase, BootResult, BootSnapshot, BootTotals, MasterAnswer } from './boot.js';
export type { Notification } from './notification.js';
export type { ServeOptions, ServedHook } from './serve.js';
export { createHookApp, createMetricsApp } from './app.js';
export { BootHandler } from './boot-handler.js';
export { NotReadyError, StartingHandler, type StartingOptions } from './starting.js';
export { serveApp, serveHook, isLoopback, parseListen } from './serve.js';
export { HookError, type HookErrorCode } from './errors.js';
