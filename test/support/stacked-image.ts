// An image built by hand as any OCI tool would from twinlayer's changesets (issue 12 item 5, "changesets that read
// back right in every OCI applier"): the base image's layers as Docker saved them, then each changeset's tar
// (gunzip'd) as a layer of its own, in a docker-archive (legacy layout: manifest.json, a config, layer tars) that
// `docker load` takes. Nothing of twinlayer's staging or restore code is used: the layers are the bucket's bytes.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import Docker from 'dockerode';
import { create as createTar, extract } from 'tar';
import { z } from 'zod';

const savedManifest = z.array(z.looseObject({ Config: z.string(), Layers: z.array(z.string()) })).length(1);
const savedConfig = z.looseObject({
  rootfs: z.looseObject({ type: z.literal('layers'), diff_ids: z.array(z.string()) }),
  history: z.array(z.looseObject({})).optional(),
});

/** Saves `baseImage` from `from`, stacks the gzip'd changeset tars `changesets` (oldest first) on it as layers, and
 *  loads the result as `tag` into `into`. */
export async function loadStackedImage(from: Docker, into: Docker, baseImage: string, changesets: readonly string[], dir: string, tag: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await pipeline(await from.getImage(baseImage).get(), extract({ cwd: dir }));
  const manifest = savedManifest.parse(JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')));
  const saved = manifest[0]!;
  const config = savedConfig.parse(JSON.parse(await readFile(join(dir, saved.Config), 'utf8')));
  const layers = [...saved.Layers];
  for (const [i, blob] of changesets.entries()) {
    const rel = `changeset-${i}/layer.tar`;
    await mkdir(join(dir, `changeset-${i}`));
    const hash = createHash('sha256');
    const meter = new Transform({ transform(chunk: Buffer, _enc, cb) { hash.update(chunk); cb(null, chunk); } });
    await pipeline(createReadStream(blob), createGunzip(), meter, createWriteStream(join(dir, rel)));
    layers.push(rel);
    config.rootfs.diff_ids.push(`sha256:${hash.digest('hex')}`);
    config.history?.push({ created: new Date(0).toISOString(), created_by: `twinlayer changeset ${i}` });
  }
  const configBytes = Buffer.from(JSON.stringify(config));
  const configName = `${createHash('sha256').update(configBytes).digest('hex')}.json`;
  await writeFile(join(dir, configName), configBytes);
  await writeFile(join(dir, 'manifest.json'), JSON.stringify([{ Config: configName, RepoTags: [tag], Layers: layers }]));
  const archive = createTar({ cwd: dir, portable: true }, ['manifest.json', configName, ...layers]);
  const progress = await into.loadImage(archive as unknown as NodeJS.ReadableStream);
  await new Promise<void>((resolve, reject) => {
    into.modem.followProgress(progress, (err: Error | null, out: unknown[]) => {
      const failed = out?.find((o): o is { error: string } => typeof o === 'object' && o !== null && 'error' in o);
      if (err !== null) reject(err);
      else if (failed !== undefined) reject(new Error(`docker load of ${tag}: ${failed.error}`));
      else resolve();
    });
  });
}
