import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultLimits } from '../../../src/changeset/limits.js';
import { formatPaxTime, parsePaxBody, parsePaxTime, type TarEntry } from '../../../src/changeset/tar-format.js';
import { readChangeset } from '../../../src/changeset/tar-reader.js';
import { chooseGzipLevel, gzipAndHash, TarFileWriter } from '../../../src/changeset/tar-writer.js';

const entries: Array<{ e: TarEntry; body?: Buffer }> = [
  { e: { path: 'etc', type: 'dir', mode: 0o755, uid: 0, gid: 0, mtimeNs: 1_700_000_000_000_000_000n, size: 0, xattrs: [] } },
  { e: { path: 'etc/app.conf', type: 'file', mode: 0o4755, uid: 100000, gid: 4_000_000_000, mtimeNs: 1_700_000_000_123_456_789n, size: 5, xattrs: [['security.capability', Buffer.from('0100000200040000000000000000000000000000', 'hex')], ['user.nl', Buffer.from('a\nb=c\0')]] }, body: Buffer.from('hello') },
  { e: { path: 'etc/.wh.gone', type: 'file', mode: 0, uid: 0, gid: 0, mtimeNs: 0n, size: 0, xattrs: [], removeOnly: true } },
  { e: { path: 'd/'.repeat(100) + 'ü-long-name', type: 'file', mode: 0o600, uid: 1, gid: 2, mtimeNs: -5_500_000_000n, size: 600, xattrs: [] }, body: Buffer.alloc(600, 9) },
  { e: { path: 'lib', type: 'symlink', mode: 0o777, uid: 0, gid: 0, mtimeNs: 1_000_000_000n, size: 0, linkpath: '/usr/' + 'x'.repeat(150), xattrs: [] } },
  { e: { path: 'etc/hl', type: 'hardlink', mode: 0o644, uid: 0, gid: 0, mtimeNs: 1_000_000_000n, size: 0, linkpath: 'etc/app.conf', xattrs: [] } },
];

describe('tar framing', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'twinlayer-tar-unit-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const write = async (name: string): Promise<{ file: string; digest: string }> => {
    const w = await TarFileWriter.create(join(dir, `${name}.tar`));
    for (const { e, body } of entries) await w.writeEntry(e, body);
    await w.finish();
    const file = join(dir, `${name}.tar.gz`);
    const { digest } = await gzipAndHash(join(dir, `${name}.tar`), file);
    return { file, digest };
  };

  it('round-trips paths, modes, ids, times, links, xattrs and bodies', async () => {
    const { file } = await write('rt');
    const seen: Array<{ e: TarEntry; body: Buffer }> = [];
    const summary = await readChangeset(file, defaultLimits, async (e, body) => {
      const parts: Buffer[] = [];
      for await (const c of body.chunks()) parts.push(Buffer.from(c));
      seen.push({ e, body: Buffer.concat(parts) });
    });
    assert.equal(summary.entries, entries.length);
    assert.deepEqual(seen.map((s) => s.e), entries.map((x) => x.e));
    assert.deepEqual(seen.map((s) => s.body), entries.map((x) => x.body ?? Buffer.alloc(0)));
  });

  it('is deterministic and readable by GNU tar', async () => {
    const a = await write('a');
    const b = await write('b');
    assert.equal(a.digest, b.digest);
    const listed = execFileSync('tar', ['-tzf', a.file]).toString().trim().split('\n');
    assert.deepEqual(listed, entries.map(({ e }) => (e.type === 'dir' ? `${e.path}/` : e.path)));
  });

  it('skips unread bodies', async () => {
    const { file } = await write('skip');
    const paths: string[] = [];
    await readChangeset(file, defaultLimits, async (e) => {
      paths.push(e.path);
      await Promise.resolve();
    });
    assert.equal(paths.length, entries.length);
  });
});

describe('PAX records', () => {
  it('formats and parses times with nanoseconds', () => {
    for (const ns of [0n, 1_000_000_000n, 1_700_000_000_123_456_789n, -1_500_000_000n, 5n]) {
      assert.equal(parsePaxTime(formatPaxTime(ns)), ns);
    }
    assert.equal(formatPaxTime(1_500_000_000n), '1.5');
    assert.equal(parsePaxTime('12.1234567891234'), 12_123_456_789n);
    assert.equal(parsePaxTime('1e9'), null);
  });
  it('parses strictly', () => {
    const ok = parsePaxBody(Buffer.from('11 path=ab\n'));
    assert.ok(ok instanceof Map);
    assert.equal(ok.get('path')?.toString(), 'ab');
    for (const bad of ['12 path=ab\n', '11 path=abX', 'x path=ab\n', '0 =\n', '11 path=ab\n11 path=ab\n', '6 =ab\n']) {
      assert.equal(typeof parsePaxBody(Buffer.from(bad)), 'string', bad);
    }
  });
});

describe('gzip level choice', () => {
  it('stores data that does not compress and compresses data that does, the same way every time', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tl-gzlevel-'));
    try {
      const random = join(dir, 'random.tar');
      const text = join(dir, 'text.tar');
      const small = join(dir, 'small.tar');
      await writeFile(random, randomBytes(3 * 1024 * 1024));
      await writeFile(text, Buffer.from('listen 8080\nserver_name example\n'.repeat(100_000)));
      await writeFile(small, randomBytes(64 * 1024));
      assert.equal(await chooseGzipLevel(random), 0);
      assert.equal(await chooseGzipLevel(text), 1);
      assert.equal(await chooseGzipLevel(small), 1);
      const a = await gzipAndHash(random, join(dir, 'a.gz'));
      const b = await gzipAndHash(random, join(dir, 'b.gz'));
      assert.equal(a.digest, b.digest);
      assert.ok(a.size >= 3 * 1024 * 1024, 'stored, not deflated');
      const t = await gzipAndHash(text, join(dir, 't.gz'));
      assert.ok(t.size < (await stat(text)).size / 10, 'text is deflated');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
