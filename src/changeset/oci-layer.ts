// An overlay upper dir as one OCI image layer (uncompressed tar): what `twinlayer restore --image` puts on top of the
// base image's layers. Whiteouts (0/0 character devices) become empty `.wh.<name>` files, an opaque dir
// (trusted.overlay.opaque=y) gets a `.wh..wh..opq` entry after it, hard links are link entries to the first path of
// their inode, and the other xattrs ride as SCHILY.xattr PAX records as in Docker's own layers. The trusted.overlay.*
// attributes are overlayfs's bookkeeping, not the container's, and are never written into a layer.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, open, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ChangesetToolError } from './errors.js';
import type { TarEntry } from './tar-format.js';
import { TarFileWriter } from './tar-writer.js';
import { isWhiteoutStat } from './whiteout-node.js';
import { readXattrs } from './xattr.js';

export interface OciLayer {
  /** The layer's diff id: `sha256:<hex>` of the uncompressed tar. */
  diffId: string;
  size: number;
  entries: number;
}

const OVERLAY_XATTR = 'trusted.overlay.';
const OPAQUE_XATTR = 'trusted.overlay.opaque';
/** Upper dirs are walked one dir at a time; past this depth the tree is refused rather than recursed without end. */
const MAX_DEPTH = 4096;
const COPY_BUFFER = 1024 * 1024;

interface Node {
  rel: string;
  abs: string;
}

/** Every path under `upperDir`, parents before children, names sorted bytewise (a layer's order is then stable). */
async function walk(upperDir: string): Promise<Node[]> {
  const out: Node[] = [];
  const visit = async (relDir: string, depth: number): Promise<void> => {
    if (depth > MAX_DEPTH) throw new ChangesetToolError(`${relDir}: deeper than ${MAX_DEPTH} dirs; not made into a layer`);
    const names = (await readdir(join(upperDir, relDir))).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    for (const name of names) {
      const rel = relDir === '' ? name : `${relDir}/${name}`;
      const abs = join(upperDir, rel);
      out.push({ rel, abs });
      if ((await lstat(abs)).isDirectory()) await visit(rel, depth + 1);
    }
  };
  await visit('', 0);
  return out;
}

function basenameOf(rel: string): string {
  return rel.slice(rel.lastIndexOf('/') + 1);
}

function parentOf(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '' : rel.slice(0, i + 1);
}

/** Writes `upperDir` as an OCI layer tar at `dest` (created; must not exist) and returns its diff id. */
export async function writeOciLayer(upperDir: string, dest: string): Promise<OciLayer> {
  const nodes = await walk(upperDir);
  const xattrs = await readXattrs(nodes.map((n) => n.abs));
  const writer = await TarFileWriter.create(dest);
  const firstOfInode = new Map<string, string>();
  let entries = 0;
  try {
    for (const { rel, abs } of nodes) {
      const st = await lstat(abs, { bigint: true });
      const all = xattrs.get(abs) ?? [];
      const kept = all.filter(([name]) => !name.startsWith(OVERLAY_XATTR));
      const base = { mode: Number(st.mode & 0o7777n), uid: Number(st.uid), gid: Number(st.gid), mtimeNs: st.mtimeNs, xattrs: kept };
      entries++;
      if (isWhiteoutStat(st)) {
        await writer.writeEntry({ path: `${parentOf(rel)}.wh.${basenameOf(rel)}`, type: 'file', mode: 0, uid: 0, gid: 0, mtimeNs: st.mtimeNs, size: 0, xattrs: [] });
      } else if (st.isDirectory()) {
        await writer.writeEntry({ ...base, path: rel, type: 'dir', size: 0 });
        const opaque = all.find(([name]) => name === OPAQUE_XATTR);
        if (opaque !== undefined && opaque[1].toString() === 'y') {
          await writer.writeEntry({ path: `${rel}/.wh..wh..opq`, type: 'file', mode: 0, uid: 0, gid: 0, mtimeNs: st.mtimeNs, size: 0, xattrs: [] });
          entries++;
        }
      } else if (st.isSymbolicLink()) {
        await writer.writeEntry({ ...base, path: rel, type: 'symlink', size: 0, linkpath: await readlink(abs) });
      } else if (st.isFile()) {
        const inode = `${st.dev}:${st.ino}`;
        const first = st.nlink > 1n ? firstOfInode.get(inode) : undefined;
        if (first !== undefined) {
          // The inode's xattrs came with its first path.
          await writer.writeEntry({ ...base, path: rel, type: 'hardlink', size: 0, linkpath: first, xattrs: [] });
          continue;
        }
        if (st.nlink > 1n) firstOfInode.set(inode, rel);
        await writeFileEntry(writer, { ...base, path: rel, type: 'file', size: Number(st.size) }, abs);
      } else {
        // A restored upper dir holds only what changesets carry; anything else was not made by a restore.
        throw new ChangesetToolError(`${rel} in ${upperDir} is neither a file, a dir, a symlink nor a whiteout; not made into a layer`);
      }
    }
    await writer.finish();
  } catch (err) {
    await writer.abandon();
    throw err;
  }
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(dest, { highWaterMark: COPY_BUFFER })) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { diffId: `sha256:${hash.digest('hex')}`, size, entries };
}

/** Streams the file's body after its header; a file that changed size meanwhile is an error, not a torn entry. */
async function writeFileEntry(writer: TarFileWriter, e: TarEntry, abs: string): Promise<void> {
  await writer.writeHeader(e);
  const fh = await open(abs, 'r');
  try {
    const buf = Buffer.allocUnsafe(COPY_BUFFER);
    let left = e.size;
    while (left > 0) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, left), e.size - left);
      if (bytesRead === 0) throw new ChangesetToolError(`${e.path} in ${abs} got shorter while it was written into a layer`);
      await writer.writeBody(buf.subarray(0, bytesRead));
      left -= bytesRead;
    }
  } finally {
    await fh.close();
  }
  await writer.padBody(e.size);
}
