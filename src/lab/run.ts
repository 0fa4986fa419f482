// Running short commands with a bound on time; the exit code is returned, not thrown, so callers decide.
import { execFile } from 'node:child_process';
import { LabError } from './errors.js';

export interface RunResult {
  stdout: string;
  stderr: string;
  code: number;
}

export function run(file: string, args: readonly string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(
      file,
      [...args],
      { timeout: opts.timeoutMs ?? 15_000, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024, encoding: 'utf8', ...(opts.env ? { env: opts.env } : {}) },
      (err, stdout, stderr) => {
        if (!err) return resolve({ stdout, stderr, code: 0 });
        const e = err as NodeJS.ErrnoException & { code?: number | string; killed?: boolean };
        // A spawn failure (ENOENT) or a timeout kill has no numeric exit code; report them as 127 / 124 like a shell.
        const code = typeof e.code === 'number' ? e.code : e.killed === true ? 124 : 127;
        resolve({ stdout, stderr: stderr || e.message, code });
      },
    );
  });
}

/** Run and throw a LabError with the command and its stderr when it fails. */
export async function mustRun(file: string, args: readonly string[], opts: { timeoutMs?: number } = {}): Promise<string> {
  const r = await run(file, args, opts);
  if (r.code !== 0) {
    throw new LabError('LAB_COMMAND', `command failed (exit ${r.code}): ${file} ${args.join(' ')}: ${r.stderr.trim()}`);
  }
  return r.stdout;
}
