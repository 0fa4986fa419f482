// A container's volumes travel in the same changeset as its upper dir (DESIGN.md "Changeset format"): a tracker
// over an upper dir and two volume dirs, staged into another upper dir and two other volume dirs, gives equal
// trees after every step; a deletion in a volume is a removal there, never a whiteout device; hostile entries that
// aim at a volume the twin does not have, climb out of one, or go through a symlinked volume dir are refused before
// anything is written. Root only (chown, mknod).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { appendFile, chmod, chown, link, mkdir, mkdtemp, readdir, readFile, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import {
  ChangesetRejectedError, ChunkIndex, defaultLimits, placeChunks, recoverStaging, stageChangeset, UpperTracker, volumeTarPath, type BuiltChangeset, type ChunkList, type StageTarget,
} from '../../../src/changeset/index.js';
import { DirBlobStore, KeyLayout, PackStore } from '../../../src/store/index.js';
import { StageTargetError } from '../../../src/changeset/errors.js';
import { readChangeset } from '../../../src/changeset/tar-reader.js';
import { diffTrees, requireRoot, snapshotTree } from '../../support/overlay.js';
import { dir, entry, file, hardlinkEntry, tarOf, writeGz, type Piece } from './craft-tar.js';

async function list(path: string): Promise<string[]> {
  const out: string[] = [];
  await readChangeset(path, defaultLimits, async (e) => {
    out.push(`${e.type}:${e.path}${e.removeOnly === true ? '(remove)' : ''}`);
    await Promise.resolve();
  });
  return out;
}

describe('volumes in the changeset of their container', () => {
  let base = '';
  let n = 0;
  before(async () => {
    requireRoot();
    base = await mkdtemp('/tmp/twinlayer-cs-volumes-');
  });
  after(async () => {
    if (base !== '') await rm(base, { recursive: true, force: true });
  });

  async function trees(root: string): Promise<{ primary: { upper: string; data: string; anon: string }; twin: { upper: string; data: string; anon: string }; target: StageTarget }> {
    const mk = async (p: string): Promise<string> => {
      await mkdir(p, { recursive: true });
      return p;
    };
    const primary = { upper: await mk(join(root, 'p/upper')), data: await mk(join(root, 'p/volumes/data/_data')), anon: await mk(join(root, 'p/volumes/abc/_data')) };
    const twin = { upper: await mk(join(root, 't/upper')), data: await mk(join(root, 't/volumes/data/_data')), anon: await mk(join(root, 't/volumes/twinlayer-anon-1/_data')) };
    const target: StageTarget = { upperDir: twin.upper, tmpDir: join(root, 't/tmp'), volumes: { data: twin.data, 'twinlayer-anon-1': twin.anon } };
    return { primary, twin, target };
  }

  async function assertSame(a: { upper: string; data: string; anon: string }, b: { upper: string; data: string; anon: string }, when: string): Promise<void> {
    for (const k of ['upper', 'data', 'anon'] as const) {
      assert.deepEqual(diffTrees(await snapshotTree(a[k]), await snapshotTree(b[k])), [], `${k} differs ${when}`);
    }
    // The volume roots' owner and mode travel too.
    for (const k of ['data', 'anon'] as const) {
      const [x] = [...(await snapshotTree(join(a[k], '..'))).values()];
      const [y] = [...(await snapshotTree(join(b[k], '..'))).values()];
      assert.deepEqual([x?.mode, x?.uid, x?.gid], [y?.mode, y?.uid, y?.gid], `${k} root differs ${when}`);
    }
  }

  it('ships writes, overwrites, deletes, renames and dirs of the upper dir and both volumes in one changeset', async () => {
    const { primary: p, twin: t, target } = await trees(join(base, 'roundtrip'));
    await mkdir(join(p.upper, 'etc'));
    await writeFile(join(p.upper, 'etc/app.conf'), 'v1');
    await writeFile(join(p.data, 'leases'), 'lease 1\n');
    await mkdir(join(p.data, 'certs/old'), { recursive: true });
    await writeFile(join(p.data, 'certs/old/a.pem'), 'A');
    await writeFile(join(p.anon, 'state'), 'anon 1');
    await symlink('/etc/passwd', join(p.anon, 'abs-link'));
    await chown(p.data, 101, 102);
    await chmod(p.data, 0o750);
    const tracker = new UpperTracker({
      upperDir: p.upper, workDir: join(base, 'w'),
      volumes: [{ key: 'data', destination: '/var/lib/data', dir: p.data }, { key: 'twinlayer-anon-1', destination: '/anon', dir: p.anon }],
    });
    const ship = async (scope: 'full' | 'reconcile'): Promise<string[]> => {
      const built = await tracker.build(scope);
      assert.ok(built !== null, 'something ships');
      const entries = await list(built.file);
      await stageChangeset(built.file, built.kind, target);
      tracker.commit(built);
      await rm(built.file);
      return entries;
    };
    const full = await ship('full');
    assert.ok(full.includes(`dir:${volumeTarPath('data', '')}`), 'a full changeset carries each volume root');
    assert.ok(full.includes(`file:${volumeTarPath('data', 'leases')}`));
    assert.ok(full.includes('file:etc/app.conf'));
    await assertSame(p, t, 'after the full changeset');

    // One step touching all three trees: overwrite, delete, rename, dir removed, dir made, hard link, chmod.
    await writeFile(join(p.upper, 'etc/app.conf'), 'v2');
    await writeFile(join(p.data, 'leases'), 'lease 1\nlease 2\n');
    await rm(join(p.data, 'certs/old'), { recursive: true });
    await mkdir(join(p.data, 'certs/new'));
    await writeFile(join(p.data, 'certs/new/b.pem'), 'B');
    await link(join(p.data, 'certs/new/b.pem'), join(p.data, 'certs/b-link.pem'));
    await rename(join(p.anon, 'state'), join(p.anon, 'state.renamed'));
    await unlink(join(p.anon, 'abs-link'));
    await chmod(p.anon, 0o700);
    const delta = await ship('reconcile');
    assert.ok(delta.includes(`file:${volumeTarPath('data', 'certs/.wh.old')}(remove)`), `a deletion in a volume is a removal: ${delta.join(' ')}`);
    assert.ok(delta.includes(`file:${volumeTarPath('twinlayer-anon-1', '.wh.abs-link')}(remove)`));
    await assertSame(p, t, 'after the delta');
    // No overlay whiteout (char device 0/0) in a twin's volume, ever.
    const devices = execFileSync('find', [t.data, t.anon, '-type', 'c']).toString();
    assert.equal(devices, '');

    // A char device 0/0 in a volume is a device, not a whiteout: it is not shipped (a warning), the rest is.
    execFileSync('mknod', [join(p.data, 'looks-like-whiteout'), 'c', '0', '0']);
    await writeFile(join(p.data, 'after'), 'x');
    const third = await ship('reconcile');
    assert.ok(!third.some((e) => e.includes('looks-like-whiteout')), third.join(' '));
    await unlink(join(p.data, 'looks-like-whiteout'));
    await assertSame(p, t, 'after a device appeared in a volume');
  });

  it('a large file inside a volume ships in chunks named by its tar path, is assembled into the twin\'s volume, and its next version reuses the chunks there', async () => {
    const { primary: p, twin: t, target } = await trees(join(base, 'chunked'));
    const big = randomBytes(3 * 1024 * 1024);
    await writeFile(join(p.data, 'big.db'), big);
    await writeFile(join(p.upper, 'top.bin'), randomBytes(1536 * 1024));
    await writeFile(join(p.anon, 'small'), 'small');
    // The pusher's pack store and the standby's, on a local-directory bucket (the same BlobStore seam as S3).
    const bucketStore = new DirBlobStore(join(base, 'chunked-store'));
    const layout = new KeyLayout('twinlayer', 'volumes');
    const pushPacks = new PackStore(bucketStore, layout);
    const pullPacks = new PackStore(bucketStore, layout);
    const tracker = new UpperTracker({
      upperDir: p.upper, workDir: join(base, 'w-chunked'),
      volumes: [{ key: 'data', destination: '/var/lib/data', dir: p.data }, { key: 'twinlayer-anon-1', destination: '/anon', dir: p.anon }],
      chunking: { thresholdBytes: 1024 * 1024, openSink: pushPacks.openSink },
    });
    const index = await ChunkIndex.load(join(base, 'chunked-index.json'), 'twin-1');
    const ship = async (scope: 'full' | 'reconcile'): Promise<{ built: BuiltChangeset; list: ChunkList; stats: { local: number; fetched: number } }> => {
      const built = await tracker.build(scope);
      assert.ok(built?.chunks !== undefined, 'something ships in chunks');
      const places = await built.chunks.sink.finish(built.chunks.files);
      const chunkList = placeChunks(built.chunks.files, (d) => places.get(d));
      const r = await stageChangeset(built.file, built.kind, target, {
        chunks: { list: chunkList, locate: index.locate, dir: join(base, 'chunked-fetch'), fetch: (range, out) => pullPacks.fetchRangeInto(range, out) },
      });
      index.adopt(chunkList, built.kind);
      tracker.commit(built);
      assert.ok(r.chunks !== undefined);
      return { built, list: chunkList, stats: r.chunks };
    };
    const first = await ship('full');
    assert.deepEqual(first.list.files.map((f) => f.path), ['.wh..twinlayer-volumes/data/big.db', 'top.bin']);
    assert.equal(first.stats.local, 0);
    assert.deepEqual(await readFile(join(t.data, 'big.db')), big);
    await assertSame(p, t, 'after the first chunked commit');

    // An append: the twin's volume holds every chunk but the last ones; those are all that is fetched.
    await appendFile(join(p.data, 'big.db'), randomBytes(200 * 1024));
    const second = await ship('reconcile');
    assert.deepEqual(second.list.files.map((f) => f.path), ['.wh..twinlayer-volumes/data/big.db']);
    const chunks = second.list.files[0]?.chunks.length ?? 0;
    assert.ok(second.stats.local > 0, `chunks taken from the twin's volume: ${JSON.stringify(second.stats)}`);
    assert.equal(second.stats.local + second.stats.fetched, new Set(second.list.files[0]?.chunks.map(([d]) => d)).size);
    assert.ok(second.stats.fetched < chunks / 2, `most chunks reused: ${JSON.stringify(second.stats)}`);
    assert.deepEqual(await readFile(join(t.data, 'big.db')), await readFile(join(p.data, 'big.db')));
    await assertSame(p, t, 'after the append');
  });

  it('one undo log covers the upper dir and the volumes: a commit undone after a crash leaves all three as before', async () => {
    const root = join(base, 'undo');
    const { primary: p, twin: t, target } = await trees(root);
    await writeFile(join(p.upper, 'u'), 'u1');
    await writeFile(join(p.data, 'd'), 'd1');
    await writeFile(join(p.anon, 'a'), 'a1');
    const tracker = new UpperTracker({
      upperDir: p.upper, workDir: join(root, 'w'),
      volumes: [{ key: 'data', destination: '/data', dir: p.data }, { key: 'twinlayer-anon-1', destination: '/anon', dir: p.anon }],
    });
    const first = await tracker.build('full');
    assert.ok(first !== null);
    await stageChangeset(first.file, first.kind, target);
    tracker.commit(first);
    const snap = async (): Promise<string> => JSON.stringify(await Promise.all([t.upper, t.data, t.anon, join(t.data, '..')].map(async (d) => [...(await snapshotTree(d))])), (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
    const before = await snap();
    await writeFile(join(p.upper, 'u'), 'u2');
    await rm(join(p.data, 'd'));
    await writeFile(join(p.data, 'new'), 'n');
    await chmod(p.data, 0o711);
    await writeFile(join(p.anon, 'a'), 'a2');
    const second = await tracker.build('reconcile');
    assert.ok(second !== null);
    // The commit is applied in all three trees, then the process dies before it is recorded.
    await assert.rejects(stageChangeset(second.file, second.kind, target, { record: () => Promise.reject(new Error('killed before the record')) }), /killed before the record/);
    assert.notEqual(await snap(), before, 'the commit was applied');
    const outcome = await recoverStaging(target, () => false);
    assert.equal(outcome.action, 'undone');
    assert.equal(await snap(), before, 'upper dir and volumes as before the commit');
  });

  async function hostile(name: string, pieces: Piece[], expect: RegExp, setup?: (t: { upper: string; data: string; anon: string }, root: string) => Promise<void>): Promise<void> {
    const root = join(base, `hostile-${n++}`);
    const { twin: t, target } = await trees(root);
    await writeFile(join(t.data, 'keep'), 'keep');
    await writeFile(join(root, 'outside'), 'outside');
    await setup?.(t, root);
    const blob = await writeGz(join(root, 'blob.tar.gz'), tarOf(pieces));
    const before = JSON.stringify([...(await snapshotTree(root, (rel) => rel === 't/tmp'))], (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
    await assert.rejects(stageChangeset(blob, 'delta', target), (err: unknown) => {
      assert.ok(err instanceof ChangesetRejectedError || err instanceof StageTargetError, `${name}: got ${String(err)}`);
      assert.match((err as Error).message, expect, name);
      return true;
    });
    const afterSnap = JSON.stringify([...(await snapshotTree(root, (rel) => rel === 't/tmp'))], (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
    assert.equal(afterSnap, before, `${name}: something was written`);
    assert.deepEqual(await readdir(join(root, 't/tmp')).catch(() => []), [], `${name}: tmp dir not empty`);
  }

  it('refuses a volume the twin does not have, a climb out of a volume, and a volume dir that is a symlink, before writing', async () => {
    await hostile('unknown volume', [file('etc-ok', 'x'), file(volumeTarPath('other', 'x'), 'x')], /not a volume of this twin/);
    await hostile('dot-dot in a volume', [file(volumeTarPath('data', '../../outside'), 'x')], /'\.\.' component/);
    await hostile('dot-dot as the volume', [file('.wh..twinlayer-volumes/../outside', 'x')], /'\.\.' component/);
    await hostile('the reserved dir itself', [dir('.wh..twinlayer-volumes')], /reserved volumes dir/);
    await hostile('a volume root that is a file', [file(volumeTarPath('data', ''), 'x')], /must be a directory/);
    await hostile('an overlay whiteout in a volume', [entry({ path: volumeTarPath('data', '.wh.keep') })], /remove-only/);
    await hostile('an opaque marker in a volume', [dir(volumeTarPath('data', 'd')), entry({ path: volumeTarPath('data', 'd/.wh..wh..opq') })], /opaque marker inside a volume/);
    await hostile('a hard link from a volume into the upper dir', [file('secret', 's'), hardlinkEntry(volumeTarPath('data', 'l'), 'secret')], /hard link across/);
    await hostile('a write through a symlink inside a volume', [file(volumeTarPath('data', 'esc/x'), 'x')], /parent .* is a symlink/, async (t, root) => {
      await symlink(root, join(t.data, 'esc'));
    });
    await hostile('a symlinked volume dir', [file(volumeTarPath('data', 'x'), 'x')], /symlink/, async (t, root) => {
      await rm(t.data, { recursive: true });
      await mkdir(join(root, 'elsewhere'));
      await symlink(join(root, 'elsewhere'), t.data);
    });
  });
});
