// Images for the lab, the demo and the tests without a registry: a busybox root filesystem from Debian's
// busybox-static, imported with `docker import`. Through the docker CLI: the lab stays off the dockerode seam.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { create as createTar } from 'tar';
import { dockerCli } from './engine.js';

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
  /** Files of this machine copied into the image at the same path (e.g. a dynamically linked tool and the
   *  libraries `ldd` names for it: busybox has no setfattr). */
  hostFiles?: string[];
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
  for (const file of opts.hostFiles ?? []) {
    if (!file.startsWith('/')) throw new Error(`hostFiles: expected an absolute path, got ${JSON.stringify(file)}`);
    const to = join(dir, file);
    await mkdir(join(to, '..'), { recursive: true });
    await copyFile(file, to);
    await chmod(to, 0o755);
  }
  if (opts.payloadBytes !== undefined && opts.payloadBytes > 0) {
    await mkdir(join(dir, 'payload'));
    await writeFile(join(dir, 'payload/blob.bin'), randomBytes(opts.payloadBytes));
  }
}

/** Builds the busybox rootfs, tars it and imports it (`docker import`) as `tag`. Returns the image id.
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
    const cmd = opts.cmd ?? ['sh'];
    const changes = cmd.length > 0 ? ['--change', `CMD ${JSON.stringify(cmd)}`] : [];
    await dockerCli({ socketPath }, ['import', ...changes, tarPath, tag]);
    return await imageId(socketPath, tag);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** `docker save` on one engine, `docker load` on another: the image keeps its id (and its tags) between engines
 *  of one image store. Between overlay2 and the containerd store the id changes (a config digest on one, a manifest
 *  digest on the other) while the layers' diff ids stay: checked. Returns the image's id on the destination. */
export async function copyImage(fromSocketPath: string, toSocketPath: string, ref: string): Promise<string> {
  const work = await mkdtemp(join(tmpdir(), 'twl-img-'));
  try {
    const tarPath = join(work, 'image.tar');
    await dockerCli({ socketPath: fromSocketPath }, ['save', '-o', tarPath, ref], 120_000);
    await dockerCli({ socketPath: toSocketPath }, ['load', '-q', '-i', tarPath], 120_000);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  const a = await imageId(fromSocketPath, ref);
  const b = await imageId(toSocketPath, ref);
  if (a === b) return b;
  const driver = async (socketPath: string): Promise<string> => (await dockerCli({ socketPath }, ['info', '-f', '{{.Driver}}'])).trim();
  const layers = async (socketPath: string): Promise<string> => (await dockerCli({ socketPath }, ['image', 'inspect', '-f', '{{json .RootFS.Layers}}', ref])).trim();
  const [da, db] = [await driver(fromSocketPath), await driver(toSocketPath)];
  if (da === db) throw new Error(`copyImage ${ref}: ids differ on two ${da} engines (${a} vs ${b})`);
  const [la, lb] = [await layers(fromSocketPath), await layers(toSocketPath)];
  if (la !== lb) throw new Error(`copyImage ${ref}: the layers differ after the copy from ${da} to ${db} (${la} vs ${lb})`);
  return b;
}

async function imageId(socketPath: string, ref: string): Promise<string> {
  const id = (await dockerCli({ socketPath }, ['image', 'inspect', '-f', '{{.Id}}', ref])).trim();
  if (!/^sha256:[0-9a-f]{64}$/.test(id)) throw new Error(`docker image inspect ${ref}: no image id (got "${id.slice(0, 100)}")`);
  return id;
}
