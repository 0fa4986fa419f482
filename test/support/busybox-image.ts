// Test images without a registry: a busybox root filesystem from Debian's busybox-static, imported with `docker import`.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import { create as createTar } from 'tar';

const execFileP = promisify(execFile);
const BUSYBOX = '/bin/busybox';

/** Files the image carries besides busybox, so tests can modify, delete and recreate image content. */
export const IMAGE_FILES: Readonly<Record<string, string>> = {
  'etc/passwd': 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n',
  'etc/group': 'root:x:0:\nnogroup:x:65534:\n',
  'etc/app/a.conf': 'alpha=1\n',
  'etc/app/b.conf': 'beta=2\n',
  'srv/data/one.txt': 'one\n',
  'srv/data/sub/two.txt': 'two\n',
  'srv/data/sub/deep/three.txt': 'three\n',
  'var/www/index.html': '<h1>twinlayer test image</h1>\n',
};

export interface BusyboxImageOptions {
  /** Bytes of random (incompressible) data in /payload/blob.bin. Default none. */
  payloadBytes?: number;
  /** CMD of the image; default ["sh"]; [] for none. */
  cmd?: string[];
}

/** Builds the root filesystem into `dir` (must exist and be empty). */
export async function buildBusyboxRootfs(dir: string, opts: BusyboxImageOptions = {}): Promise<void> {
  if (!existsSync(BUSYBOX)) throw new Error(`${BUSYBOX} not found: apt-get install -y busybox-static`);
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc', 'root', 'tmp', 'var/www', 'proc', 'sys', 'dev']) {
    await mkdir(join(dir, d), { recursive: true });
  }
  await chmod(join(dir, 'tmp'), 0o1777);
  await copyFile(BUSYBOX, join(dir, 'bin/busybox'));
  await chmod(join(dir, 'bin/busybox'), 0o755);
  const { stdout } = await execFileP(BUSYBOX, ['--list']);
  const applets = stdout.split('\n').map((s) => s.trim()).filter((s) => /^[a-z0-9_.[-]+$/i.test(s) && s !== 'busybox');
  if (!applets.includes('sh') || !applets.includes('httpd')) throw new Error(`${BUSYBOX} lacks sh or httpd: ${applets.length} applets`);
  for (const applet of applets) await symlink('busybox', join(dir, 'bin', applet));
  for (const [rel, content] of Object.entries(IMAGE_FILES)) {
    const file = join(dir, rel);
    await mkdir(join(file, '..'), { recursive: true });
    await writeFile(file, content);
  }
  if (opts.payloadBytes !== undefined && opts.payloadBytes > 0) {
    await mkdir(join(dir, 'payload'));
    await writeFile(join(dir, 'payload/blob.bin'), randomBytes(opts.payloadBytes));
  }
}

async function drain(stream: NodeJS.ReadableStream): Promise<string> {
  let text = '';
  for await (const chunk of stream) text += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
  return text;
}

/** Builds the busybox rootfs, tars it and imports it (`docker import` through the API) as `tag`. Returns the image id.
 *  Note: two imports of the same tar get different ids (the config records the import time); use copyImage to get
 *  the same image id on a second engine. */
export async function importBusyboxImage(socketPath: string, tag: string, opts: BusyboxImageOptions = {}): Promise<string> {
  const work = await mkdtemp(join(tmpdir(), 'twl-img-'));
  try {
    const root = join(work, 'rootfs');
    await mkdir(root);
    await buildBusyboxRootfs(root, opts);
    const tarPath = join(work, 'rootfs.tar');
    await createTar({ file: tarPath, cwd: root }, ['.']);
    const colon = tag.lastIndexOf(':');
    const repo = colon > 0 ? tag.slice(0, colon) : tag;
    const version = colon > 0 ? tag.slice(colon + 1) : 'latest';
    const cmd = opts.cmd ?? ['sh'];
    const changes = cmd.length > 0 ? [`CMD ${JSON.stringify(cmd)}`] : [];
    const docker = new Docker({ socketPath });
    const progress = await docker.importImage(tarPath, { repo, tag: version, changes });
    const body = await drain(progress);
    if (/"error(Detail)?"\s*:/.test(body)) throw new Error(`docker import ${tag}: ${body.slice(0, 500)}`);
    const info = (await docker.getImage(tag).inspect()) as { Id?: unknown };
    if (typeof info.Id !== 'string') throw new Error(`docker import ${tag}: no image id`);
    return info.Id;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** `docker save` on one engine piped into `docker load` on another: the image keeps its id (and its tags). */
export async function copyImage(fromSocketPath: string, toSocketPath: string, ref: string): Promise<string> {
  const from = new Docker({ socketPath: fromSocketPath });
  const to = new Docker({ socketPath: toSocketPath });
  const tar = await from.getImage(ref).get();
  const body = await drain(await to.loadImage(tar, { quiet: true }));
  if (/"error(Detail)?"\s*:/.test(body)) throw new Error(`docker load of ${ref}: ${body.slice(0, 500)}`);
  const a = (await from.getImage(ref).inspect()) as { Id?: unknown };
  const b = (await to.getImage(ref).inspect()) as { Id?: unknown };
  if (typeof a.Id !== 'string' || a.Id !== b.Id) throw new Error(`copyImage ${ref}: ids differ (${String(a.Id)} vs ${String(b.Id)})`);
  return a.Id;
}
