// What the real-service images cost (issue 9): the debootstrap build of their shared rootfs — first (into a fresh
// cache dir, so it always builds) and cached —, the `docker save` archive, `docker load` into a fresh engine, and the
// sizes (the rootfs tar, each image as the engine reports it, and the three together). Prints a table and writes
// bench/results/<date>-service-images.json.
//   node --import tsx bench/service-images.ts            (builds once from scratch: about a minute, needs the mirror)
//   node --import tsx bench/service-images.ts --cached   (the machine's cache only)
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dockerCli, startEngine, stopAllEngines } from '../src/lab/engine.js';
import { loadServiceImages, serviceImageArchive, serviceRootfs, SERVICES } from '../src/lab/service-images.js';

const cachedOnly = process.argv.includes('--cached');
const log = (line: string): void => void process.stderr.write(`${line}\n`);

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const v = await fn();
  return [v, Math.round(performance.now() - t0)];
}

const rows: Array<[string, string]> = [];
const result: Record<string, unknown> = { when: new Date().toISOString() };
const fresh = cachedOnly ? null : await mkdtemp(join(tmpdir(), 'twl-svc-cache-'));
try {
  if (fresh !== null) {
    const [, firstMs] = await timed(() => serviceRootfs({ cacheDir: fresh, log }));
    result['firstBuildMs'] = firstMs;
    rows.push(['rootfs build, first (debootstrap, empty cache)', `${(firstMs / 1000).toFixed(1)} s`]);
  }
  const [rootfs, cachedMs] = await timed(() => serviceRootfs({ log }));
  result['cachedBuildMs'] = cachedMs;
  rows.push(['rootfs build, cached (scripts/service-rootfs.sh finds the tar)', `${cachedMs} ms`]);
  const [{ archive }, archiveMs] = await timed(() => serviceImageArchive({ log }));
  result['archiveMs'] = archiveMs;
  rows.push(['image archive (written once per rootfs, then cached)', `${archiveMs} ms`]);
  const rootfsBytes = (await stat(rootfs)).size;
  result['rootfsBytes'] = rootfsBytes;
  rows.push(['rootfs tar (the one layer of the three images)', `${(rootfsBytes / 1e6).toFixed(1)} MB`]);
  result['archiveBytes'] = (await stat(archive)).size;

  const engine = await startEngine({ name: 'bench-svc' });
  const [images, loadMs] = await timed(() => loadServiceImages([engine], { log }));
  result['loadMs'] = loadMs;
  rows.push(['docker load of the three images into a fresh engine', `${(loadMs / 1000).toFixed(1)} s`]);
  const sizes: Record<string, number> = {};
  for (const s of SERVICES) {
    sizes[s] = Number((await dockerCli(engine, ['image', 'inspect', '-f', '{{.Size}}', images[s].ref])).trim());
    rows.push([`image ${images[s].ref} (docker image inspect .Size)`, `${(sizes[s] / 1e6).toFixed(1)} MB`]);
  }
  result['imageBytes'] = sizes;
  const du = await dockerCli(engine, ['system', 'df', '--format', '{{.Type}} {{.Size}}']);
  const imagesOnDisk = du.split('\n').find((l) => l.startsWith('Images '))?.slice('Images '.length) ?? '?';
  result['imagesOnDisk'] = imagesOnDisk;
  rows.push(['the three images on the engine\'s disk (docker system df: one shared layer)', imagesOnDisk]);
} finally {
  await stopAllEngines();
  if (fresh !== null) await rm(fresh, { recursive: true, force: true });
}

process.stdout.write('\n| service images | measured |\n|---|---|\n');
for (const [k, v] of rows) process.stdout.write(`| ${k} | ${v} |\n`);
const dir = join(dirname(fileURLToPath(import.meta.url)), 'results');
await mkdir(dir, { recursive: true });
const file = join(dir, `${new Date().toISOString().slice(0, 10)}-service-images.json`);
await writeFile(file, JSON.stringify(result, null, 2) + '\n');
process.stdout.write(`wrote ${file}\n`);
