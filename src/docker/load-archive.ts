// A docker-archive (what `docker save` writes, the legacy layout every engine's `docker load` reads, both image
// stores) built from files already checked: the image config and its layer tars, uncompressed. The archive is streamed
// from those files as the engine reads it, never built in memory nor copied.
import { PassThrough } from 'node:stream';

import { create as createTar } from 'tar';

/** A reference `docker load` can tag: name[:tag] (":latest" when none), never a digest reference or an image id. */
const refRe = /^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]{1,5})?\/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$/;

/** The tag an image loaded for `ref` (a spec's Config.Image) gets: `ref` with ":latest" when it names no tag; null
 *  when it is an id, a digest reference or nothing a tag can be. Pure. */
export function repoTagOf(ref: string | null): string | null {
  if (ref === null || ref.length > 255 || !refRe.test(ref)) return null;
  // An image id (sha256:<hex>, or the bare hex Docker refuses as a name).
  if (/^(sha256:)?[0-9a-f]{64}$/.test(ref)) return null;
  const lastSegment = ref.slice(ref.lastIndexOf('/') + 1);
  return lastSegment.includes(':') ? ref : `${ref}:latest`;
}

export interface DockerArchiveFiles {
  /** The config's file name in the archive dir. */
  config: string;
  /** The layer tars' file names in the archive dir, bottom first (a name may repeat: an image may hold a layer twice). */
  layers: readonly string[];
  /** The tags the loaded image gets (none: it is loaded by id only). */
  repoTags: readonly string[];
}

/** manifest.json of a one-image docker-archive. Pure. */
export function dockerArchiveManifest(f: DockerArchiveFiles): string {
  return JSON.stringify([{ Config: f.config, RepoTags: f.repoTags.length === 0 ? null : [...f.repoTags], Layers: [...f.layers] }]);
}

/** The archive as a tar stream of `manifest.json` and the files it names, read from `dir` as the stream is consumed.
 *  manifest.json must be in `dir` already. */
export function packDockerArchive(dir: string, f: DockerArchiveFiles): NodeJS.ReadableStream {
  const files = ['manifest.json', f.config, ...new Set(f.layers)];
  // node-tar's Pack is a Minipass stream: piped through a PassThrough, dockerode gets a Node stream.
  return createTar({ cwd: dir, portable: true, noDirRecurse: true }, files).pipe(new PassThrough());
}
