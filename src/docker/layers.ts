// Resolves a container's overlay2 dirs from docker inspect and checks they are where twinlayer may write.
import { lstat, realpath } from 'node:fs/promises';
import * as path from 'node:path';
import { LayerResolveError } from './errors.js';
import type { ErrorContext } from '../log/errors.js';

export interface OverlayLayers {
  upperDir: string;
  lowerDirs: string[];
  mergedDir: string;
  workDir: string;
}

/** True when `p` is a normalized absolute path strictly inside `dir`. */
function isStrictlyUnder(p: string, dir: string): boolean {
  if (!path.isAbsolute(p) || path.normalize(p) !== p || p.endsWith('/')) return false;
  const rel = path.relative(dir, p);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

/** Pure: the layers named by inspect's GraphDriver, refused unless the driver is overlay2 and every dir is a
 *  normalized absolute path under `${dataRoot}/overlay2/`. */
export function layersFromGraphDriver(
  driver: { Name: string; Data?: Record<string, string> | null | undefined },
  dataRoot: string,
  context: ErrorContext,
): OverlayLayers {
  if (driver.Name !== 'overlay2') {
    throw new LayerResolveError(`graph driver is "${driver.Name}", not overlay2`, context);
  }
  const data = driver.Data ?? {};
  const base = path.join(dataRoot, 'overlay2');
  const take = (key: string): string => {
    const value = data[key];
    if (value === undefined || value === '') throw new LayerResolveError(`GraphDriver.Data.${key} is missing`, context);
    if (!isStrictlyUnder(value, base)) {
      throw new LayerResolveError(`${key} "${value}" is not a normalized absolute path under ${base}/`, { ...context, path: value });
    }
    return value;
  };
  const upperDir = take('UpperDir');
  const mergedDir = take('MergedDir');
  const workDir = take('WorkDir');
  // LowerDir is absent for a container whose image has no layers; otherwise colon-separated, topmost first.
  const lower = data['LowerDir'];
  const lowerDirs = lower === undefined || lower === '' ? [] : lower.split(':');
  for (const dir of lowerDirs) {
    if (!isStrictlyUnder(dir, base)) {
      throw new LayerResolveError(`a LowerDir entry "${dir}" is not a normalized absolute path under ${base}/`, { ...context, path: dir });
    }
  }
  return { upperDir, lowerDirs, mergedDir, workDir };
}

export interface UpperDirFacts {
  /** From lstat: the upper dir itself is a symlink. */
  isSymbolicLink: boolean;
  isDirectory: boolean;
  /** realpath of the upper dir; differs from it when a parent component is a symlink. */
  realPath: string;
}

/** Pure: refuse an upper dir that is a symlink, not a directory, or reached through a symlinked parent. */
export function checkUpperDirFacts(upperDir: string, facts: UpperDirFacts, context: ErrorContext): void {
  if (facts.isSymbolicLink) throw new LayerResolveError('the upper dir is a symlink', { ...context, path: upperDir });
  if (!facts.isDirectory) throw new LayerResolveError('the upper dir is not a directory', { ...context, path: upperDir });
  if (facts.realPath !== upperDir) {
    throw new LayerResolveError(`the upper dir resolves through a symlink to ${facts.realPath}`, { ...context, path: upperDir });
  }
}

/** Looks at the upper dir on disk (lstat, realpath) and applies checkUpperDirFacts. */
export async function verifyUpperDirOnDisk(upperDir: string, context: ErrorContext): Promise<void> {
  let facts: UpperDirFacts;
  try {
    const st = await lstat(upperDir);
    facts = { isSymbolicLink: st.isSymbolicLink(), isDirectory: st.isDirectory(), realPath: st.isSymbolicLink() ? '' : await realpath(upperDir) };
  } catch (cause) {
    throw new LayerResolveError('the upper dir cannot be read', { ...context, path: upperDir }, { cause });
  }
  checkUpperDirFacts(upperDir, facts, context);
}
