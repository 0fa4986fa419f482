// writeOciLayer: an overlay upper dir as one OCI layer tar, read back with node-tar. Whiteouts (0/0 character
// devices) become `.wh.<name>` files, an opaque dir gets `.wh..wh..opq` after it, a hard link is a link entry to the
// inode's first path, user and security xattrs ride as SCHILY.xattr PAX records while trusted.overlay.* never do, and
// the diff id is the sha256 of the tar. Root only (mknod, trusted.* xattrs); no dockerd.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, chown, link, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Parser, type ReadEntry } from 'tar';
import { writeOciLayer } from '../../../src/changeset/index.js';
import { requireRoot } from '../../support/overlay.js';

const run = promisify(execFile);

interface Seen { type: string; mode: number; uid: number; gid: number; linkpath?: string; body: string }

async function readLayer(file: string): Promise<Map<string, Seen>> {
  const out = new Map<string, Seen>();
  const parser = new Parser({ strict: true });
  parser.on('entry', (e: ReadEntry) => {
    const chunks: Buffer[] = [];
    e.on('data', (c: Buffer) => chunks.push(c));
    e.on('end', () => {
      out.set(e.path.replace(/\/$/, ''), {
        type: e.type, mode: (e.mode ?? 0) & 0o7777, uid: e.uid ?? -1, gid: e.gid ?? -1, ...(e.linkpath ? { linkpath: e.linkpath } : {}), body: Buffer.concat(chunks).toString(),
      });
    });
  });
  await new Promise<void>((resolve, reject) => {
    parser.on('end', resolve);
    parser.on('error', reject);
    createReadStream(file).pipe(parser);
  });
  return out;
}

describe('writeOciLayer', () => {
  let base = '';
  before(async () => {
    requireRoot();
    base = await mkdtemp(join(tmpdir(), 'tl-oci-layer-'));
  });
  after(async () => {
    if (base) await rm(base, { recursive: true, force: true });
  });

  it('writes whiteouts, opaque dirs, hard links, symlinks, owners and xattrs as an OCI layer', async () => {
    const upper = join(base, 'upper');
    await mkdir(join(upper, 'etc/conf.d'), { recursive: true });
    await mkdir(join(upper, 'srv/app'), { recursive: true });
    await run('mknod', ['-m', '000', join(upper, 'etc/gone'), 'c', '0', '0']);
    await writeFile(join(upper, 'etc/conf.d/three'), 'three\n');
    await run('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', join(upper, 'etc/conf.d')]);
    await writeFile(join(upper, 'srv/app/config'), 'secret\n', { mode: 0o640 });
    await chown(join(upper, 'srv/app'), 1234, 5678);
    await chmod(join(upper, 'srv/app'), 0o750);
    await link(join(upper, 'srv/app/config'), join(upper, 'srv/app/config.hard'));
    await symlink('/etc/app.conf', join(upper, 'srv/link'));
    await run('setfattr', ['-n', 'user.note', '-v', 'kept', join(upper, 'srv/app/config')]);
    // overlayfs's own bookkeeping on a plain dir: never in a layer.
    await run('setfattr', ['-n', 'trusted.overlay.origin', '-v', 'x', join(upper, 'srv')]);

    const dest = join(base, 'layer.tar');
    const layer = await writeOciLayer(upper, dest);
    const bytes = await readFile(dest);
    assert.equal(layer.diffId, `sha256:${createHash('sha256').update(bytes).digest('hex')}`);
    assert.equal(layer.size, bytes.length);

    const t = await readLayer(dest);
    assert.deepEqual([...t.keys()], [
      'etc', 'etc/conf.d', 'etc/conf.d/.wh..wh..opq', 'etc/conf.d/three', 'etc/.wh.gone',
      'srv', 'srv/app', 'srv/app/config', 'srv/app/config.hard', 'srv/link',
    ]);
    assert.equal(t.get('etc/.wh.gone')?.type, 'File');
    assert.equal(t.get('etc/conf.d/.wh..wh..opq')?.type, 'File');
    // node-tar keeps no SCHILY.xattr records: the PAX records are read from the bytes. The one xattr kept, once; no
    // trusted.overlay.* (the opaque marker and the origin) at all.
    const text = bytes.toString('latin1');
    assert.equal(text.split(' SCHILY.xattr.user.note=kept\n').length, 2, 'user.note as a PAX record');
    assert.ok(!text.includes('trusted.overlay'), 'trusted.overlay.* is left out');
    const app = t.get('srv/app');
    assert.deepEqual([app?.type, app?.mode, app?.uid, app?.gid], ['Directory', 0o750, 1234, 5678]);
    const cfg = t.get('srv/app/config');
    assert.deepEqual([cfg?.type, cfg?.mode, cfg?.body], ['File', 0o640, 'secret\n']);
    assert.deepEqual([t.get('srv/app/config.hard')?.type, t.get('srv/app/config.hard')?.linkpath], ['Link', 'srv/app/config']);
    assert.deepEqual([t.get('srv/link')?.type, t.get('srv/link')?.linkpath], ['SymbolicLink', '/etc/app.conf']);
  });

  it('refuses what a restored upper dir never holds (a fifo), naming it, and writes the same bytes twice', async () => {
    const upper = join(base, 'fifo-upper');
    await mkdir(upper);
    await run('mkfifo', [join(upper, 'pipe')]);
    await assert.rejects(writeOciLayer(upper, join(base, 'fifo.tar')), /pipe in .* is neither a file, a dir, a symlink nor a whiteout/);
    const plain = join(base, 'plain');
    await mkdir(join(plain, 'd'), { recursive: true });
    await writeFile(join(plain, 'd/f'), 'x');
    const a = await writeOciLayer(plain, join(base, 'a.tar'));
    const b = await writeOciLayer(plain, join(base, 'b.tar'));
    assert.equal(a.diffId, b.diffId);
  });
});
