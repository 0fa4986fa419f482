// Run by memory.test.ts in a process of its own, so the peak RSS it reports is staging's alone: stages one blob
// into an upper dir with the default limits and prints one JSON line with the outcome and VmHWM (peak RSS, /proc).
// `--baseline` only loads the modules, for the figure to compare with.
import { readFileSync } from 'node:fs';
import { stageChangeset } from '../../../src/changeset/index.js';

function peakRssKiB(): number {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  if (m === null) throw new Error('no VmHWM in /proc/self/status');
  return Number(m[1]);
}

const [blob, upperDir, tmpDir] = process.argv.slice(2);
const started = Date.now();
let outcome: { ok: true } | { ok: false; code: string; message: string };
if (blob === '--baseline') outcome = { ok: true };
else {
  try {
    await stageChangeset(blob ?? '', 'delta', { upperDir: upperDir ?? '', tmpDir: tmpDir ?? '' });
    outcome = { ok: true };
  } catch (err) {
    outcome = { ok: false, code: (err as { code?: string }).code ?? 'none', message: (err as Error).message };
  }
}
process.stdout.write(`${JSON.stringify({ ...outcome, ms: Date.now() - started, peakRssKiB: peakRssKiB(), mem: process.memoryUsage() })}\n`);
