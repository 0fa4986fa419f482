// Images of real network services for the tests and the demo, from Debian's packages and without a registry:
// scripts/service-rootfs.sh builds one root filesystem with debootstrap (dnsmasq, nginx with openssl, nftables),
// cached outside the clone. Here it becomes three images sharing that one layer, written once as a `docker save`
// archive beside it and loaded into each engine with `docker load`: every engine gets the same image ids (a twin is
// created by its primary's image id), and no engine imports the rootfs on its own. Through the docker CLI, like
// busybox-image.ts.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { create as createTar } from 'tar';
import { z } from 'zod';
import { dockerCli } from './engine.js';
import type { Engine } from './engine.js';

const execFileP = promisify(execFile);
const ROOTFS_SCRIPT = fileURLToPath(new URL('../../scripts/service-rootfs.sh', import.meta.url));
const PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export const SERVICES = ['dnsmasq', 'nginx', 'nftables'] as const;
export type Service = (typeof SERVICES)[number];

/** What each image runs by default, in the foreground as PID 1. Tests and the demo usually give their own command. */
export const SERVICE_COMMANDS: Readonly<Record<Service, readonly string[]>> = Object.freeze({
  dnsmasq: ['dnsmasq', '--keep-in-foreground', '--log-facility=-'],
  nginx: ['nginx', '-g', 'daemon off;'],
  // A firewall container: applies /etc/nftables.conf at start, then waits; ends on SIGTERM like a service.
  nftables: ['sh', '-c', "nft -f /etc/nftables.conf && trap 'exit 0' TERM INT && while :; do sleep 3600 & wait $!; done"],
});

export interface ServiceImage {
  ref: string;
  id: string;
}
export type ServiceImages = Readonly<Record<Service, ServiceImage>>;

export interface ServiceImageOptions {
  /** Where the rootfs and the archive are cached. Default: $TWINLAYER_CACHE_DIR or /var/cache/twinlayer. */
  cacheDir?: string;
  log?: (line: string) => void;
}

function cacheDirOf(opts: ServiceImageOptions): string {
  return opts.cacheDir ?? process.env['TWINLAYER_CACHE_DIR'] ?? '/var/cache/twinlayer';
}

/** Builds the rootfs unless cached (scripts/service-rootfs.sh: debootstrap, about 45 s here) and returns its tar. */
export async function serviceRootfs(opts: ServiceImageOptions = {}): Promise<string> {
  try {
    const { stdout, stderr } = await execFileP('bash', [ROOTFS_SCRIPT], {
      env: { ...process.env, TWINLAYER_CACHE_DIR: cacheDirOf(opts) }, timeout: 15 * 60_000, maxBuffer: 4 * 1024 * 1024,
    });
    if (stderr.trim() !== '') opts.log?.(stderr.trim());
    const tar = stdout.trim().split('\n').pop() ?? '';
    if (!tar.endsWith('.tar') || !existsSync(tar)) throw new Error(`printed no tar path (got ${JSON.stringify(stdout.slice(0, 200))})`);
    return tar;
  } catch (err) {
    const stderr = typeof err === 'object' && err !== null && 'stderr' in err ? String(err.stderr).trim() : '';
    throw new Error(`building the service rootfs (${ROOTFS_SCRIPT}) failed: ${stderr || String(err)}`, { cause: err });
  }
}

async function sha256OfFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function dockerArch(): string {
  if (process.arch === 'x64') return 'amd64';
  if (process.arch === 'arm64') return 'arm64';
  throw new Error(`no Docker architecture name for ${process.arch}`);
}

const imageSchema = z.strictObject({ ref: z.string().min(1), id: z.string().regex(/^sha256:[0-9a-f]{64}$/) });
// The archive's index, cached beside it.
const imagesFileSchema = z.strictObject({ dnsmasq: imageSchema, nginx: imageSchema, nftables: imageSchema });

/**
 * The `docker save` archive of the three service images (built once per rootfs and cached beside it, written to a
 * temp name and renamed) and their refs and ids. The ids follow from the rootfs alone: the image configs carry the
 * rootfs tar's mtime as their creation time.
 */
export async function serviceImageArchive(opts: ServiceImageOptions = {}): Promise<{ archive: string; images: ServiceImages }> {
  const rootfs = await serviceRootfs(opts);
  const key = /service-rootfs-([0-9a-f]{16})\.tar$/.exec(basename(rootfs))?.[1];
  if (key === undefined) throw new Error(`unexpected rootfs name ${rootfs}`);
  const archive = join(dirname(rootfs), `service-images-${key}.tar`);
  const indexFile = `${archive}.json`;
  if (existsSync(archive) && existsSync(indexFile)) {
    return { archive, images: imagesFileSchema.parse(JSON.parse(await readFile(indexFile, 'utf8'))) };
  }
  const t0 = Date.now();
  const layer = await sha256OfFile(rootfs);
  const created = (await stat(rootfs)).mtime.toISOString();
  const work = await mkdtemp(join(dirname(rootfs), '.images-'));
  try {
    await mkdir(join(work, 'dir', layer), { recursive: true });
    await symlink(rootfs, join(work, 'dir', layer, 'layer.tar'));
    const manifest: Array<{ Config: string; RepoTags: string[]; Layers: string[] }> = [];
    const images: Partial<Record<Service, ServiceImage>> = {};
    for (const service of SERVICES) {
      const config = JSON.stringify({
        architecture: dockerArch(),
        os: 'linux',
        created,
        config: { Env: [PATH_ENV], Cmd: SERVICE_COMMANDS[service], WorkingDir: '/' },
        rootfs: { type: 'layers', diff_ids: [`sha256:${layer}`] },
        history: [{ created, created_by: `twinlayer scripts/service-rootfs.sh (${key}): Debian minbase with dnsmasq, nginx-light, openssl, nftables` }],
      });
      const id = createHash('sha256').update(config).digest('hex');
      await writeFile(join(work, 'dir', `${id}.json`), config);
      const ref = `twinlayer/${service}:${key}`;
      manifest.push({ Config: `${id}.json`, RepoTags: [ref], Layers: [`${layer}/layer.tar`] });
      images[service] = { ref, id: `sha256:${id}` };
    }
    await writeFile(join(work, 'dir', 'manifest.json'), JSON.stringify(manifest));
    const tmp = join(work, 'images.tar');
    await createTar({ file: tmp, cwd: join(work, 'dir'), follow: true, portable: true }, ['manifest.json', ...manifest.map((m) => m.Config), layer]);
    await writeFile(`${indexFile}.tmp`, JSON.stringify(images, null, 2));
    await rename(tmp, archive);
    await rename(`${indexFile}.tmp`, indexFile);
    opts.log?.(`service images: archive ${archive} written in ${Date.now() - t0} ms`);
    return { archive, images: images as ServiceImages };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Loads dnsmasq, nginx and nftables into each engine (`docker load` of the cached archive); the same ids everywhere. */
export async function loadServiceImages(engines: ReadonlyArray<Pick<Engine, 'socketPath'>>, opts: ServiceImageOptions = {}): Promise<ServiceImages> {
  const { archive, images } = await serviceImageArchive(opts);
  for (const engine of engines) {
    const t0 = Date.now();
    await dockerCli(engine, ['load', '-q', '-i', archive], 180_000);
    for (const service of SERVICES) {
      const id = (await dockerCli(engine, ['image', 'inspect', '-f', '{{.Id}}', images[service].ref])).trim();
      if (id !== images[service].id) throw new Error(`service image ${images[service].ref} loaded as ${id}, expected ${images[service].id}`);
    }
    opts.log?.(`service images: loaded into ${engine.socketPath} in ${Date.now() - t0} ms`);
  }
  return images;
}
