// Memory of validation whatever the changeset (issue 8, "Bounds on hostile changesets"): gzip'd blobs of at most
// 100 MB that expand to millions of tar entries (short paths, 95-byte paths, ~970-byte paths) or to 19 GB of xattrs
// are staged in a child process of their own (validate-child.ts), so its peak RSS (VmHWM) is staging's alone. Each
// is refused by a bound of limits.ts, nothing is written, and the peak RSS stays under `peakRssBoundMiB`.
//
// Why 320 MiB: the child's baseline (Node, tsx, the modules) is ~95 MiB; validation keeps at most maxIndexBytes
// (64 MiB, ~25% more in V8 than it charges); dead 1 MiB gunzip chunks accumulate until V8's external-memory trigger
// collects them (up to ~64 MiB); the young generation takes up to 3 x 16 MiB. 95 + 80 + 64 + 48 = 287, rounded up.
// Before these bounds the same blobs peaked at 474, 585 and 1431 MiB, and the xattr blob grew past 20 GB.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { requireRoot } from '../../support/overlay.js';
import { writeHugeXattrBlob, writeLongPathsBlob, writeManyEntriesBlob } from './bomb-blobs.js';

const execFileP = promisify(execFile);
const peakRssBoundMiB = 320;
const maxBlobBytes = 100 * 1000 * 1000;
const child = new URL('./validate-child.ts', import.meta.url).pathname;
const deepDir = `m/${'a'.repeat(250)}/${'b'.repeat(250)}/${'c'.repeat(250)}`;

interface ChildReport { ok: boolean; code?: string; message?: string; ms: number; peakRssKiB: number }

async function runChild(args: string[]): Promise<ChildReport> {
  const { stdout } = await execFileP(process.execPath, ['--import', 'tsx', child, ...args], { timeout: 300_000, maxBuffer: 1 << 20 });
  return JSON.parse(stdout) as ChildReport;
}

describe('validation memory stays bounded whatever the changeset holds', { timeout: 600_000 }, () => {
  let base = '';
  let upper = '';
  let tmpDir = '';
  let baselineKiB = 0;

  before(async () => {
    requireRoot();
    base = await mkdtemp('/tmp/twinlayer-cs-memory-');
    upper = join(base, 'upper');
    tmpDir = join(base, 'tmp');
    await mkdir(join(upper, deepDir), { recursive: true });
    await mkdir(tmpDir);
    baselineKiB = (await runChild(['--baseline'])).peakRssKiB;
  });
  after(async () => {
    if (base !== '') await rm(base, { recursive: true, force: true });
  });

  const cases: Array<{ name: string; build: (file: string) => Promise<void>; refusal: RegExp }> = [
    { name: '3,000,000 entries with short paths', build: (f) => writeManyEntriesBlob(f, 3_000_000, 'm'), refusal: /more than 250000 entries/ },
    { name: '3,000,000 entries with 95-byte paths', build: (f) => writeManyEntriesBlob(f, 3_000_000, 'm', 'l'.repeat(88)), refusal: /more than 250000 entries/ },
    { name: '2,000,000 entries with ~970-byte paths', build: (f) => writeLongPathsBlob(f, 2_000_000, deepDir, 'p'.repeat(200)), refusal: /more paths than validation indexes/ },
    { name: '100,000 entries with 3 xattrs of 64 KiB each (19 GB)', build: (f) => writeHugeXattrBlob(f, 100_000, 'm', 3, 65536), refusal: /xattrs pass/ },
  ];

  for (const c of cases) {
    it(`refuses ${c.name} with the peak RSS under ${peakRssBoundMiB} MiB`, async () => {
      const file = join(base, 'blob.tar.gz');
      await c.build(file);
      const size = (await stat(file)).size;
      assert.ok(size <= maxBlobBytes, `the blob is ${size} bytes`);
      const before = (await readdir(upper)).sort();
      const r = await runChild([file, upper, tmpDir]);
      await rm(file);
      console.log(`# ${c.name}: blob ${(size / 1e6).toFixed(1)} MB, refused in ${r.ms} ms, peak RSS ${(r.peakRssKiB / 1024).toFixed(0)} MiB (baseline ${(baselineKiB / 1024).toFixed(0)} MiB): ${r.message?.slice(0, 80) ?? ''}`);
      assert.equal(r.ok, false, 'refused');
      assert.equal(r.code, 'CHANGESET_REJECTED');
      assert.match(r.message ?? '', c.refusal);
      assert.ok(r.peakRssKiB < peakRssBoundMiB * 1024, `peak RSS ${r.peakRssKiB} KiB`);
      assert.deepEqual((await readdir(upper)).sort(), before, 'nothing written');
      assert.deepEqual(await readdir(tmpDir), []);
    });
  }
});
