// Relative POSIX paths inside an upper dir: validation of untrusted names, byte-order sorting, OCI whiteout naming
// and excludes. Pure functions; no file system access.
import { maxNameBytes } from './limits.js';

export const whiteoutPrefix = '.wh.';
export const opaqueName = '.wh..wh..opq';

/** Why `rel` is not a safe relative path, or null when it is. Rejects absolute paths, empty/`.`/`..` components,
 *  repeated or trailing slashes, NUL, over-long names and paths, and text that does not survive UTF-8. */
export function relPathProblem(rel: string, maxPathBytes: number): string | null {
  if (rel.length === 0) return 'empty path';
  if (rel.includes('\0')) return 'NUL byte in path';
  if (rel.includes('\uFFFD')) return 'path is not valid UTF-8';
  if (rel.startsWith('/')) return 'absolute path';
  if (Buffer.byteLength(rel) > maxPathBytes) return `path longer than ${maxPathBytes} bytes`;
  for (const part of rel.split('/')) {
    if (part === '') return 'empty component (repeated or trailing slash)';
    if (part === '.' || part === '..') return `'${part}' component`;
    if (Buffer.byteLength(part) > maxNameBytes) return `name longer than ${maxNameBytes} bytes`;
  }
  return null;
}

/** Byte order of the UTF-8 encodings; a parent always sorts before its children (it is their prefix). */
export function comparePaths(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

export function parentOf(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '' : rel.slice(0, i);
}

export function baseOf(rel: string): string {
  return rel.slice(rel.lastIndexOf('/') + 1);
}

export function joinRel(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}

/** Proper ancestors of `rel`, top-down, without the root: `a/b/c` -> [`a`, `a/b`]. */
export function ancestorsOf(rel: string): string[] {
  const out: string[] = [];
  let i = rel.indexOf('/');
  while (i >= 0) {
    out.push(rel.slice(0, i));
    i = rel.indexOf('/', i + 1);
  }
  return out;
}

/** True when `rel` is `root` or lies under it (`root` '' is the whole tree). */
export function isAtOrUnder(rel: string, root: string): boolean {
  return root === '' || rel === root || rel.startsWith(root + '/');
}

export function whiteoutPathFor(rel: string): string {
  return joinRel(parentOf(rel), whiteoutPrefix + baseOf(rel));
}

export function opaquePathFor(dir: string): string {
  return joinRel(dir, opaqueName);
}

/** A name the container itself chose that the OCI format cannot carry. */
export function isReservedName(name: string): boolean {
  return name.startsWith(whiteoutPrefix);
}

export type TarPathMeaning =
  | { kind: 'plain'; path: string }
  | { kind: 'whiteout'; path: string; target: string }
  | { kind: 'opaque'; path: string; dir: string };

/** Reads OCI whiteout conventions out of an already validated path; returns a problem string for malformed ones
 *  (`.wh.`, `.wh..`, `.wh..wh.x`, `.wh.` inside a directory component). */
export function tarPathMeaning(path: string): TarPathMeaning | string {
  const parts = path.split('/');
  for (let i = 0; i < parts.length - 1; i++) {
    if (isReservedName(parts[i] ?? '')) return 'whiteout name used as a directory';
  }
  const base = parts[parts.length - 1] ?? '';
  if (!isReservedName(base)) return { kind: 'plain', path };
  const dir = parentOf(path);
  if (base === opaqueName) return { kind: 'opaque', path, dir };
  const name = base.slice(whiteoutPrefix.length);
  if (name === '' || name === '.' || name === '..') return 'malformed whiteout name';
  if (isReservedName(name)) return 'whiteout of a whiteout name';
  return { kind: 'whiteout', path, target: joinRel(dir, name) };
}

function globToRegExp(glob: string): RegExp {
  let src = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] ?? '';
    if (c === '*' && glob[i + 1] === '*') {
      src += '.*';
      i++;
    } else if (c === '*') src += '[^/]*';
    else if (c === '?') src += '[^/]';
    else src += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${src}$`);
}

const globCache = new Map<string, RegExp>();

/** Excludes are paths relative to the container root (a leading `/` is ignored). An exclude names a path and
 *  everything under it (a trailing `/**` says the same explicitly); `*` and `?` match within one name, `**` across. */
export function relPathIsExcluded(rel: string, excludes: readonly string[]): boolean {
  for (const raw of excludes) {
    let ex = raw.replace(/^\/+/, '').replace(/\/+$/, '');
    if (ex.endsWith('/**')) ex = ex.slice(0, -3);
    if (ex === '' || ex === '**') return true;
    if (!/[*?]/.test(ex)) {
      if (rel === ex || rel.startsWith(ex + '/')) return true;
      continue;
    }
    let re = globCache.get(ex);
    if (re === undefined) {
      re = globToRegExp(ex);
      globCache.set(ex, re);
    }
    if (re.test(rel)) return true;
    for (const a of ancestorsOf(rel)) if (re.test(a)) return true;
  }
  return false;
}
