// An Agent in process for the integration tests: short settle, fence and poll times, one host on one engine.
import { Agent, type AgentOptions } from '../../src/agent/index.js';
import { DockerRuntime } from '../../src/docker/index.js';
import { silentLogger } from '../../src/log/logger.js';
import type { Bucket } from '../../src/store/index.js';

/** `timing` overrides the short times (a test that needs the settle time far above the fence interval). */
export function inProcessAgent(o: { socketPath: string; bucket: Bucket; hostId: string; group: string; stateDir: string; timing?: Partial<Pick<AgentOptions, 'fenceIntervalMs' | 'backupSettleMs' | 'standbyCheckMs'>> }): Agent {
  return new Agent({
    runtime: new DockerRuntime({ socketPath: o.socketPath }),
    bucket: o.bucket,
    log: silentLogger,
    hostId: o.hostId,
    group: o.group,
    label: 'twinlayer.enable',
    stateDir: o.stateDir,
    excludes: [],
    debounceQuietMs: 20,
    debounceMaxMs: 200,
    uploadConcurrency: 2,
    reconcileIntervalMs: 60_000,
    pollIntervalMs: 50,
    downloadConcurrency: 2,
    startConcurrency: 4,
    finalizeDeadlineMs: 500,
    bootTimeoutMs: 10_000,
    vrrpStateFile: undefined,
    fenceIntervalMs: 200,
    backupSettleMs: 400,
    stopTimeoutSeconds: 1,
    ...o.timing,
  });
}
