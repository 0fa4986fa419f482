// The start-up every bench that runs a cluster shares: its `--name=value` options, where it writes its results, and
// the cluster itself in a fresh temp dir that goes (processes, engines, S3 server, the dir) when the bench ends,
// fails, or is stopped by SIGINT/SIGTERM (a Ctrl-C must not leave two dockerds and an S3 server behind).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EngineKind } from '../../src/lab/engine.js';
import { startCluster, stopCluster, type Cluster } from './cluster.js';

/** bench/results, where each bench writes its JSON (and tables). */
export const resultsDir = join(import.meta.dirname, '..', 'results');

/** The value of `--name=value` on the command line, undefined when absent. */
export function option(name: string): string | undefined {
  return process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
}

/** `--tag=T`, kept to word characters and dashes (it ends up in a file name); '' when absent. */
export function tagOption(): string {
  return option('tag')?.replace(/[^\w-]/g, '') ?? '';
}

/** `--name=N`: an integer from 1 to `max`, `dflt` when absent; a RangeError naming the option otherwise. */
export function intOption(name: string, dflt: number, max: number): number {
  const raw = option(name);
  const n = raw === undefined ? dflt : Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > max) throw new RangeError(`--${name}: an integer 1..${max}, got ${raw}`);
  return n;
}

export interface ClusterRun {
  /** The temp dir's name starts with this (tmpdir()/<prefix>XXXXXX). */
  prefix: string;
  /** The bench's own log: cleanup failures and an interruption are said there. */
  log: (line: string) => void;
  /** Where the engines' start-up lines go (startCluster); dropped when unset. */
  engineLog?: (line: string) => void;
  kind?: EngineKind;
}

/**
 * Runs `body` on a cluster started in a fresh temp dir (the cluster's `base`), then stops the cluster and removes the
 * dir, whether `body` returned or threw. SIGINT or SIGTERM meanwhile cleans up the same way and exits 130.
 */
export async function withCluster<T>(run: ClusterRun, body: (cluster: Cluster) => Promise<T>): Promise<T> {
  const base = await mkdtemp(join(tmpdir(), run.prefix));
  let cluster: Cluster | null = null;
  let interrupted = false;
  const cleanup = async (): Promise<void> => {
    if (cluster) await stopCluster(cluster).catch((err: unknown) => run.log(`cleanup: ${String(err)}`));
    await rm(base, { recursive: true, force: true });
  };
  const onSignal = (): void => {
    interrupted = true;
    run.log('interrupted: cleaning up');
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
  try {
    cluster = await startCluster(base, run.engineLog ?? (() => undefined), run.kind);
    return await body(cluster);
  } finally {
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
    // An interrupted run is being cleaned up by onSignal already.
    if (!interrupted) await cleanup();
  }
}
