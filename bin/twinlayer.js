#!/usr/bin/env node
// The twinlayer command. It runs the compiled JavaScript in dist/ (built from src/ by `npm run build`, which
// scripts/setup.sh runs): a start loads no TypeScript loader and depends on no transpile cache.
import { existsSync, lstatSync, mkdirSync } from 'node:fs';
import module from 'node:module';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 18)) {
  process.stderr.write(`twinlayer: needs Node >= 22.18 (24 recommended); ${process.execPath} is ${process.version} (README: "Running it for real")\n`);
  process.exit(2);
}
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const main = join(root, 'dist', 'cli', 'main.js');
if (!existsSync(main)) {
  process.stderr.write(`twinlayer: ${main} is missing: build it with \`npm run build\` in ${root} (README: "Running it for real")\n`);
  process.exit(2);
}
enableCompileCache();
await import(pathToFileURL(main).href);

/** V8's compiled code of dist/ and node_modules, kept between starts: about a third of a start's CPU is compiling
 *  the same modules again (the AWS SDK, dockerode, zod). Node checks each entry against its source, so an upgrade
 *  only costs one slower start. The directory outlives a restart: systemd's CacheDirectory= (/var/cache/twinlayer;
 *  the units hide /root and give each start a fresh /tmp), else ~/.cache/twinlayer; TWINLAYER_COMPILE_CACHE names
 *  another, `off` turns it off. A cache that cannot be written is skipped by Node, not an error. */
function enableCompileCache() {
  const configured = process.env.TWINLAYER_COMPILE_CACHE;
  if (configured === 'off' || process.env.NODE_COMPILE_CACHE !== undefined) return;
  const systemd = process.env.CACHE_DIRECTORY?.split(':')[0];
  const dir = configured || (systemd ? join(systemd, 'compile') : join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'twinlayer', 'compile'));
  // Cached code runs as this process: as root (the daemons), only from a directory no one else can write (a HOME
  // kept by `sudo -E` could name a user's). Node checks entries against their source, not who wrote them.
  if (process.getuid?.() === 0) {
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const st = lstatSync(dir);
      if (!st.isDirectory() || st.uid !== 0 || (st.mode & 0o022) !== 0) return;
    } catch {
      return;
    }
  }
  module.enableCompileCache?.(dir);
}
