#!/usr/bin/env node
// The twinlayer command. It runs the compiled JavaScript in dist/ (built from src/ by `npm run build`, which
// scripts/setup.sh runs): a start loads no TypeScript loader and depends on no transpile cache.
import { accessSync, constants as fsConstants, existsSync, lstatSync, mkdirSync } from 'node:fs';
import module from 'node:module';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 18)) {
  process.stderr.write(`twinlayer: needs Node >= 22.18 (24 recommended); ${process.execPath} is ${process.version} (README: "Running it for real")\n`);
  process.exit(2);
}
youngGenerationCap();
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

/** The daemons run with V8's young generation capped at SEMI_SPACE_MB a semi-space. Node 24's default scales with
 *  the heap limit (64 MB a semi-space, 128 MB of new space, on a 24 GB host; Node 20 stopped at 16), and V8 keeps
 *  the pages it grew to: the new space was most of what an idle daemon grew by with its containers (pusher idle with
 *  40 containers: 52 of its 176 MB) and of an agent's 300-430 MB (V8's total 170-225 MB with 60-90 MB used). With
 *  the cap: 121 MB, agents 200-250 MB through a failover; idle CPU, sync latency and a 206 MB change's CPU unchanged
 *  (bench/results/2026-12-07-{scale,quick,agent-memory}-rss13-*). V8 reads the cap when it sets up the heap, before
 *  any JavaScript runs (v8.setFlagsFromString is too late), so the process re-executes itself once with the flag:
 *  the same pid (systemd's main pid, the test's child), the same argv and environment; that costs a start about
 *  25 ms of CPU. A flag set by the caller (node --max-semi-space-size=N, NODE_OPTIONS) is left as it is. Only the
 *  daemons: a short command would pay a second Node start for nothing. */
function youngGenerationCap() {
  const SEMI_SPACE_MB = 4;
  const daemon = ['agent', 'push', 'pull'].includes(commandOf(process.argv.slice(2)) ?? '');
  const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)].some((a) => /^--max[-_]semi[-_]space[-_]size\b/.test(a));
  // The threshold is for this process's allocator, which read it at start: the tools it runs (tar, ctr) are not
  // given it.
  if (process.env.TWINLAYER_MMAP_THRESHOLD_SET === '1') {
    delete process.env.MALLOC_MMAP_THRESHOLD_;
    delete process.env.TWINLAYER_MMAP_THRESHOLD_SET;
  }
  if (!daemon || given || typeof process.execve !== 'function') return;
  // glibc's malloc: a block of 128 KiB or more is mapped on its own and unmapped when freed. By default the threshold
  // rises to the largest block freed (up to 32 MB), after which the 1 MiB stream buffers and 16 MiB packs of a
  // large change come from the heap and stay resident, fragmented: with it fixed, a 206 MB change peaked at
  // 185 / 195 MB (pusher / puller) against 264 / 208 with the cap alone, a demoted agent held 162 MB against 202,
  // with no more CPU (same results files). An operator's own setting is kept.
  const env = process.env.MALLOC_MMAP_THRESHOLD_ === undefined ? { ...process.env, MALLOC_MMAP_THRESHOLD_: '131072', TWINLAYER_MMAP_THRESHOLD_SET: '1' } : process.env;
  // A failing execve(2) aborts Node (it cannot be caught): run on without the cap when the binary is not executable
  // or Node refuses first (its permission model, a worker).
  try {
    accessSync(process.execPath, fsConstants.X_OK);
    process.execve(process.execPath, [process.execPath, `--max-semi-space-size=${SEMI_SPACE_MB}`, ...process.execArgv, ...process.argv.slice(1)], env);
  } catch {
    // The daemon runs with Node's default young generation.
  }
}

/** The command of a command line, as src/cli/args.ts finds it (the first argument that is not a flag), where a flag
 *  written `--name value` is taken to own the word after it: `--config push` names no command. A switch before the
 *  command (`--json agent`) hides it, and the daemon then runs without the cap, as before it. */
function commandOf(args) {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (!arg.startsWith('--')) return arg;
    if (!arg.includes('=')) i++;
  }
  return undefined;
}
