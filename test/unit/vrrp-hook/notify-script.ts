// Runs infra/keepalived/notify.sh as keepalived does: `sh notify.sh TYPE NAME STATE PRIORITY`, nearly no environment.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const NOTIFY = fileURLToPath(new URL('../../../infra/keepalived/notify.sh', import.meta.url));

export interface NotifyRun { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

/** A runner whose calls record the VRRP state in `stateFile` unless their env names another: never the host's
 *  /run/twinlayer/vrrp-state. Each run gets only PATH and the env given; it never throws. */
export function notifyRunner(stateFile: string): (args: string[], env: Record<string, string>) => Promise<NotifyRun> {
  return (args, env) => new Promise((resolve) => {
    const fullEnv = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', TWINLAYER_VRRP_STATE_FILE: stateFile, ...env };
    execFile('sh', [NOTIFY, ...args], { env: fullEnv, timeout: 30_000 }, (err, stdout, stderr) => {
      const e = err as (Error & { code?: unknown; signal?: NodeJS.Signals | null }) | null;
      resolve({ code: e === null ? 0 : typeof e.code === 'number' ? e.code : null, signal: e?.signal ?? null, stdout, stderr });
    });
  });
}
