// The correctness oracle of DESIGN.md: operations in overlay A (the primary) shipped as changesets and staged
// into the upper dir of overlay B (the twin, unmounted while staging) leave both merged views equal.
// Root only: real overlayfs mounts. TWINLAYER_PROPERTY_RUNS sets the number of generated sequences.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { constants as fsc } from 'node:fs';
import { chmod, lchown, link, lstat, mkdir, mkdtemp, open, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { UpperTracker, defaultLimits, stageChangeset, type BuiltChangeset } from '../../../src/changeset/index.js';
import { racyWindowNs } from '../../../src/changeset/racy.js';
import { readChangeset } from '../../../src/changeset/tar-reader.js';
import {
  buildSampleLower, diffTrees, hardLinkGroups, makeOverlayDirs, mountOverlay, requireRoot, snapshotTree, unmountOverlay, unmountQuietly,
  type OverlayDirs,
} from '../../support/overlay.js';

const runs = Number(process.env['TWINLAYER_PROPERTY_RUNS'] ?? '25');
const longName = 'n'.repeat(140);
const names = ['a', 'b', 'new', 'x y', 'ü', longName] as const;
const modes = [0o644, 0o600, 0o755, 0o4755, 0o2750, 0o1777] as const;
const uids = [0, 1000, 100000] as const;

type Op =
  | { k: 'create' | 'empty' | 'large' | 'mkdir'; dir: number; name: number; seed: number }
  | { k: 'overwrite' | 'append'; file: number; seed: number }
  | { k: 'chmod'; any: number; mode: number }
  | { k: 'chown'; any: number; uid: number }
  | { k: 'rename'; file: number; dir: number; name: number }
  | { k: 'delete'; file: number }
  | { k: 'recreateDir' | 'rmrf'; dir: number }
  | { k: 'symlink'; dir: number; name: number; abs: boolean }
  | { k: 'hardlink'; file: number; dir: number; name: number };

const idx = fc.nat(1000);
const nameIdx = fc.nat(names.length - 1);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ k: fc.constantFrom('create' as const, 'empty' as const, 'mkdir' as const), dir: idx, name: nameIdx, seed: fc.nat(1_000_000) }),
  { arbitrary: fc.record({ k: fc.constant('large' as const), dir: idx, name: nameIdx, seed: fc.nat(1_000_000) }), weight: 1 },
  fc.record({ k: fc.constantFrom('overwrite' as const, 'append' as const), file: idx, seed: fc.nat(1_000_000) }),
  fc.record({ k: fc.constant('chmod' as const), any: idx, mode: fc.nat(modes.length - 1) }),
  fc.record({ k: fc.constant('chown' as const), any: idx, uid: fc.nat(uids.length - 1) }),
  fc.record({ k: fc.constant('rename' as const), file: idx, dir: idx, name: nameIdx }),
  fc.record({ k: fc.constant('delete' as const), file: idx }),
  fc.record({ k: fc.constantFrom('recreateDir' as const, 'rmrf' as const), dir: idx }),
  fc.record({ k: fc.constant('symlink' as const), dir: idx, name: nameIdx, abs: fc.boolean() }),
  fc.record({ k: fc.constant('hardlink' as const), file: idx, dir: idx, name: nameIdx }),
);
// Each run: one to three bursts of operations, each shipped as one changeset.
const runArb = fc.array(fc.array(opArb, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 3 });

function content(seed: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i + 4 <= size; i += 4) b.writeUInt32LE((seed * 2654435761 + i) >>> 0, i);
  return b;
}

/** Applies one operation through the merged dir; never follows a symlink. Returns the relative paths it touched. */
async function applyOp(merged: string, op: Op): Promise<string[]> {
  const tree = await snapshotTree(merged);
  const pick = <T>(list: T[], i: number): T | undefined => (list.length === 0 ? undefined : list[i % list.length]);
  const dirs = ['', ...[...tree].filter(([, n]) => n.type === 'dir').map(([p]) => p)];
  const files = [...tree].filter(([, n]) => n.type === 'file').map(([p]) => p);
  const linksAndFiles = [...tree].filter(([, n]) => n.type === 'file' || n.type === 'symlink').map(([p]) => p);
  const fileOrDir = [...tree].filter(([, n]) => n.type === 'file' || n.type === 'dir').map(([p]) => p);
  const all = [...tree.keys()];
  const at = (rel: string): string => join(merged, rel);
  const child = (dir: string, n: number): string => (dir === '' ? '' : dir + '/') + (names[n] ?? 'z');
  const free = async (rel: string): Promise<boolean> => (await lstat(at(rel)).catch(() => null)) === null;
  switch (op.k) {
    case 'create':
    case 'empty':
    case 'large': {
      const rel = child(pick(dirs, op.dir) ?? '', op.name);
      if (!(await free(rel))) return [];
      const size = op.k === 'empty' ? 0 : op.k === 'large' ? 3 * 1024 * 1024 + 123 : 1 + (op.seed % 5000);
      await writeFile(at(rel), content(op.seed, size), { flag: 'wx' });
      return [rel];
    }
    case 'mkdir': {
      const rel = child(pick(dirs, op.dir) ?? '', op.name);
      if (!(await free(rel))) return [];
      await mkdir(at(rel));
      return [rel];
    }
    case 'overwrite':
    case 'append': {
      const rel = pick(files, op.file);
      if (rel === undefined) return [];
      const flags = fsc.O_WRONLY | fsc.O_NOFOLLOW | (op.k === 'append' ? fsc.O_APPEND : fsc.O_TRUNC);
      const fh = await open(at(rel), flags);
      await fh.write(content(op.seed, 1 + (op.seed % 3000)));
      await fh.close();
      return [rel];
    }
    case 'chmod': {
      const rel = pick(fileOrDir, op.any);
      if (rel === undefined) return [];
      await chmod(at(rel), modes[op.mode] ?? 0o644);
      return [rel];
    }
    case 'chown': {
      const rel = pick(all, op.any);
      if (rel === undefined) return [];
      const uid = uids[op.uid] ?? 0;
      await lchown(at(rel), uid, uid);
      return [rel];
    }
    case 'rename': {
      const from = pick(linksAndFiles, op.file);
      if (from === undefined) return [];
      const to = child(pick(dirs, op.dir) ?? '', op.name);
      const st = await lstat(at(to)).catch(() => null);
      if (st?.isDirectory() === true || to === from || to.startsWith(from + '/')) return [];
      await rename(at(from), at(to));
      return [from, to];
    }
    case 'delete': {
      const rel = pick(linksAndFiles, op.file);
      if (rel === undefined) return [];
      await unlink(at(rel));
      return [rel];
    }
    case 'recreateDir':
    case 'rmrf': {
      const rel = pick(dirs.filter((d) => d !== ''), op.dir);
      if (rel === undefined) return [];
      await rm(at(rel), { recursive: true });
      if (op.k === 'recreateDir') {
        await mkdir(at(rel));
        await writeFile(at(rel + '/fresh'), 'fresh');
      }
      return [rel];
    }
    case 'symlink': {
      const rel = child(pick(dirs, op.dir) ?? '', op.name);
      if (!(await free(rel))) return [];
      await symlink(op.abs ? '/etc/app.conf' : '../usr/lib', at(rel));
      return [rel];
    }
    case 'hardlink': {
      const from = pick(files, op.file);
      if (from === undefined) return [];
      const to = child(pick(dirs, op.dir) ?? '', op.name);
      if (!(await free(to))) return [];
      await link(at(from), at(to));
      return [from, to];
    }
  }
}

async function listChangeset(file: string): Promise<string[]> {
  const out: string[] = [];
  await readChangeset(file, defaultLimits, async (e) => {
    out.push(`${e.type}:${e.path}${e.removeOnly === true ? '(remove)' : ''}`);
    await Promise.resolve();
  });
  return out;
}

describe('changeset round trip through overlayfs', () => {
  let base = '';
  let lower = '';
  const mounted = new Set<OverlayDirs>();
  let runNo = 0;

  before(async () => {
    requireRoot();
    base = await mkdtemp('/tmp/twinlayer-cs-roundtrip-');
    lower = join(base, 'lower');
    await mkdir(lower);
    await buildSampleLower(lower);
  });

  after(async () => {
    for (const d of mounted) await unmountQuietly(d);
    if (base !== '') await rm(base, { recursive: true, force: true });
  });

  const mount = async (d: OverlayDirs): Promise<void> => {
    await mountOverlay(d);
    mounted.add(d);
  };
  const unmount = async (d: OverlayDirs): Promise<void> => {
    await unmountOverlay(d);
    mounted.delete(d);
  };

  /** Stages into B's upper with B unmounted, as for a stopped twin. */
  const ship = async (built: BuiltChangeset, b: OverlayDirs, tmpDir: string): Promise<void> => {
    await unmount(b);
    await stageChangeset(built.file, built.kind, { upperDir: b.upper, tmpDir });
    await mount(b);
    await rm(built.file);
  };
  /** Stages into B's upper with B unmounted, as for a stopped twin, then compares the merged views. */
  const shipAndCompare = async (built: BuiltChangeset, a: OverlayDirs, b: OverlayDirs, tmpDir: string, what: string): Promise<void> => {
    await ship(built, b, tmpDir);
    const [ta, tb] = [await snapshotTree(a.merged), await snapshotTree(b.merged)];
    assert.deepEqual(diffTrees(ta, tb), [], `${what}: merged views differ`);
    const [ua, ub] = [await snapshotTree(a.upper), await snapshotTree(b.upper)];
    assert.deepEqual(hardLinkGroups(ub), hardLinkGroups(ua), `${what}: hard link groups differ`);
  };

  it(`keeps B's merged view equal to A's over ${runs} generated operation sequences`, async () => {
    await fc.assert(
      fc.asyncProperty(runArb, async (bursts) => {
        const runDir = join(base, `run-${runNo++}`);
        const a = await makeOverlayDirs(runDir, 'a', lower);
        const b = await makeOverlayDirs(runDir, 'b', lower);
        const workDir = join(runDir, 'work');
        const tmpDir = join(runDir, 'stage-tmp');
        try {
          await mount(a);
          await mount(b);
          const tracker = new UpperTracker({ upperDir: a.upper, workDir });
          for (const [i, burst] of bursts.entries()) {
            const touched = new Set<string>();
            for (const op of burst) for (const p of await applyOp(a.merged, op)) touched.add(p);
            let built = await tracker.build(touched);
            // Only an empty file made within a tick is left out (its writer may not have written it yet, as after an
            // O_TRUNC); built again once settled, as the pusher's trailing flush does.
            const torn = built?.torn ?? tracker.torn;
            for (const t of torn) {
              const st = await lstat(join(a.upper, t), { bigint: true });
              assert.ok(st.isFile() && st.size === 0n, `burst ${i}: only empty files are left out, not ${t}`);
            }
            if (built === null && torn.length === 0) continue;
            if (built !== null) {
              if (process.env['TWINLAYER_CS_DEBUG'] === '1') console.error(`burst ${i}: ${JSON.stringify(burst)} touched ${[...touched].join(', ')} -> ${(await listChangeset(built.file)).join(', ')}`);
              assert.match(built.digest, /^[0-9a-f]{64}$/);
              tracker.commit(built);
            }
            if (torn.length > 0) {
              if (built !== null) await ship(built, b, tmpDir);
              const windows = await Promise.all(torn.map(async (t) => racyWindowNs((await lstat(join(a.upper, t), { bigint: true })).ctimeNs)));
              await new Promise((r) => setTimeout(r, Number(windows.reduce((x, y) => (y > x ? y : x), 0n) / 1_000_000n) + 20));
              built = await tracker.build(new Set(torn));
              assert.ok(built !== null, `burst ${i}: the empty files once settled`);
              assert.deepEqual(built.torn, []);
              tracker.commit(built);
            }
            assert.ok(built !== null);
            await shipAndCompare(built, a, b, tmpDir, `burst ${i}`);
          }
          // Events named everything: a reconcile scan finds nothing more to ship.
          const extra = await tracker.build('reconcile');
          if (extra !== null) {
            const listing = await listChangeset(extra.file);
            await rm(extra.file);
            assert.fail(`reconcile after event-scoped builds should find nothing, got: ${listing.join(', ')}`);
          }
          // A full changeset staged over B converges too (stale content pruned), and is deterministic.
          const full = await tracker.build('full');
          assert.ok(full !== null);
          const again = await new UpperTracker({ upperDir: a.upper, workDir }).build('full');
          assert.ok(again !== null);
          assert.equal(again.digest, full.digest, 'same upper dir must give the same digest');
          await rm(again.file);
          tracker.commit(full);
          await shipAndCompare(full, a, b, tmpDir, 'full');
          assert.equal(await tracker.build('reconcile'), null);
          assert.deepEqual((await snapshotTree(tmpDir)).size, 0, 'tmpDir left with files');
        } catch (err) {
          // fast-check reports only its own summary; print what actually failed.
          console.error(`run ${runDir}: ${(err as Error).stack ?? String(err)}`);
          if (process.env['TWINLAYER_KEEP_FAILED'] === '1') {
            for (const d of [a, b]) if (mounted.has(d)) await unmount(d);
            await rename(runDir, `/tmp/twinlayer-cs-failed-${Date.now()}`).catch(() => undefined);
          }
          throw err;
        } finally {
          for (const d of [a, b]) if (mounted.has(d)) await unmount(d);
          await rm(runDir, { recursive: true, force: true });
        }
      }),
      { seed: Number(process.env['TWINLAYER_PROPERTY_SEED'] ?? '424242'), numRuns: runs, endOnFailure: true },
    );
  });

  it('reconcile scope ships what events missed', async () => {
    const runDir = join(base, 'reconcile');
    const a = await makeOverlayDirs(runDir, 'a', lower);
    const b = await makeOverlayDirs(runDir, 'b', lower);
    const workDir = join(runDir, 'work');
    const tmpDir = join(runDir, 'stage-tmp');
    try {
      await mount(a);
      await mount(b);
      const tracker = new UpperTracker({ upperDir: a.upper, workDir });
      await writeFile(join(a.merged, 'etc/app.conf'), 'listen 8080\n');
      await unlink(join(a.merged, 'usr/bin/tool'));
      await rm(join(a.merged, 'etc/hosts.d'), { recursive: true });
      await mkdir(join(a.merged, 'etc/hosts.d'));
      await writeFile(join(a.merged, 'etc/hosts.d/three'), 'three\n');
      await mkdir(join(a.merged, 'srv/www'), { recursive: true });
      await writeFile(join(a.merged, 'srv/www/index.html'), '<h1>hi</h1>');
      // No events at all: only the reconcile scan sees these.
      assert.equal(await tracker.build(new Set()), null);
      const built = await tracker.build('reconcile');
      assert.ok(built !== null);
      assert.equal(built.kind, 'delta');
      assert.ok(built.counts.deletions >= 1);
      tracker.commit(built);
      await shipAndCompare(built, a, b, tmpDir, 'reconcile');
      assert.equal(await tracker.build('reconcile'), null);
      // The tracker state survives serialization.
      const revived = new UpperTracker({ upperDir: a.upper, workDir, shipped: JSON.parse(JSON.stringify(tracker.serialize())) as ReturnType<UpperTracker['serialize']> });
      assert.equal(await revived.build('reconcile'), null);
    } finally {
      for (const d of [a, b]) if (mounted.has(d)) await unmount(d);
      await rm(runDir, { recursive: true, force: true });
    }
  });
});
