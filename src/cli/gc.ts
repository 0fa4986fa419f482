// `twinlayer gc [--dry-run] [--json]`: garbage-collects the group's bucket now (what the primary does every
// gcIntervalMs): records older than `retentionMs` that no restore needs, old generations, expired divergent tails,
// and blobs, packs and image objects nothing retained (or no spec) names once older than `gcGraceMs`. Prints what was (or would be) deleted by
// kind, and what it left for an operator. Only while no pusher of the group runs: a pusher in another process
// cannot be told what is about to go and names remembered packs again without writing them (README, Retention and
// GC); the primary's own runs (gcIntervalMs) are coordinated with its uploads.
import type { Config } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import { gcKinds, GcStoppedError, runGc, type GcReport } from '../store/index.js';
import { openBucket } from './runtime-deps.js';

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

export function formatGcReport(r: GcReport, where: string): string {
  const lines = [`${r.dryRun ? 'would delete' : 'deleted'} from ${where} (commits before ${r.horizon} that no restore needs; ${r.retainedRecords} records kept):`];
  let objects = 0;
  let bytes = 0;
  for (const kind of gcKinds) {
    const t = r.deleted[kind];
    objects += t.objects;
    bytes += t.bytes;
    lines.push(`  ${kind.padEnd(11)} ${String(t.objects).padStart(8)}  ${formatBytes(t.bytes).padStart(10)}`);
  }
  lines.push(`  ${'total'.padEnd(11)} ${String(objects).padStart(8)}  ${formatBytes(bytes).padStart(10)}`);
  if (r.spared > 0) lines.push(`spared ${r.spared} blobs or packs a commit published meanwhile names`);
  if (r.problems.length > 0) {
    lines.push(`left for an operator (${r.problems.length}):`);
    for (const p of r.problems.slice(0, 50)) lines.push(`  ${p}`);
    if (r.problems.length > 50) lines.push(`  ... and ${r.problems.length - 50} more (--json lists them all)`);
  }
  return lines.join('\n') + '\n';
}

export async function run(config: Config, log: Logger, flags: ReadonlyMap<string, string>): Promise<number> {
  const { bucket, store } = await openBucket(config, log, 'gc');
  try {
    let report: GcReport;
    try {
      report = await runGc(bucket, { retentionMs: config.retentionMs, graceMs: config.gcGraceMs, dryRun: flags.get('dry-run') === 'true', log });
    } catch (err) {
      // A failover during the run: not a set-up problem (exit 2); what it deleted before is consistent, run it again.
      if (!(err instanceof GcStoppedError)) throw err;
      process.stderr.write(`twinlayer: ${err.message}; what was deleted before is consistent: run \`twinlayer gc\` again\n`);
      return 1;
    }
    const where = `${config.bucket}/${config.prefix}/${config.group}`;
    process.stdout.write(flags.get('json') === 'true' ? JSON.stringify(report, null, 2) + '\n' : formatGcReport(report, where));
  } finally {
    store.destroy();
  }
  return 0;
}
