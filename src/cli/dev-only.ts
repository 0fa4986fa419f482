// Commands that run on development dependencies (`twinlayer s3` and `twinlayer demo` need s3rver), which a
// production install (`npm ci --omit=dev`) leaves out: their modules are imported only when the command runs, and
// a missing package is a clear start-up refusal that says what to install, not a module-resolution stack trace.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TwinlayerError } from '../log/errors.js';

/** The installed tree: this file is <root>/dist/cli/ (or <root>/src/cli/ under a TypeScript loader). */
const installRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export class DevDependencyMissingError extends TwinlayerError {
  constructor(command: string, pkg: string, purpose: string, instead: string, cause: unknown) {
    super(
      'DEV_DEPENDENCY_MISSING',
      `\`twinlayer ${command}\` ${purpose}: it needs twinlayer's development dependencies, and the package ${pkg} is not installed ` +
        `(a production install, npm ci --omit=dev, leaves them out). Install them with \`npm ci\` in ${installRoot}${instead}`,
      { package: pkg },
      { cause },
    );
  }
}

/** The package a failed import could not find, when that is why it failed (not a missing file of our own). */
function missingPackage(err: unknown): string | null {
  if ((err as { code?: unknown } | null)?.code !== 'ERR_MODULE_NOT_FOUND') return null;
  return /Cannot find package '([^']+)'/.exec((err as Error).message)?.[1] ?? null;
}

export async function importDevOnly<T>(command: string, purpose: string, instead: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (err) {
    const pkg = missingPackage(err);
    if (pkg === null) throw err;
    throw new DevDependencyMissingError(command, pkg, purpose, instead, err);
  }
}
