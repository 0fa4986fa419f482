// Private Docker engines for the lab, the demo and the tests: starts dockerd with its own roots and socket, and
// stops it completely (containers, dockerd, its containerd and shims, mounts, dirs). Never touches a system-wide dockerd.
import { spawn, execFile } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, openSync, closeSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DockerRuntime } from '../docker/index.js';

const execFileP = promisify(execFile);

export interface Engine {
  name: string;
  socketPath: string;
  dataRoot: string;
  execRoot: string;
  /** PID of dockerd (setpriv and nsenter exec in place, so this is dockerd itself); a new one after restart(). */
  readonly pid: number;
  /** The engine's view of mounts, `/proc/<pid>/mountinfo` (same mount namespace as ours: netns engines join only the network namespace). */
  readonly mountInfoPath: string;
  /** The dir holding everything of this engine (removed by stop). */
  baseDir: string;
  /** Path of dockerd's log file. */
  logPath: string;
  /**
   * Starts dockerd again, as after a reboot, once it has died (SIGKILLed with its host): on the same data root, exec
   * root and socket, so Docker applies its restart policies (`always`, `unless-stopped` containers come back). What
   * the dead engine left is cleaned up first, as a reboot would: runc state (and any container process that survived),
   * containerd and shims, every mount under the engine's dir, the exec root, the pidfile and the socket. The data
   * root stays. Throws while dockerd still runs or after stop().
   */
  restart(): Promise<void>;
  /** The init pids of the engine's containers as runc records them (whatever their network namespace). */
  containerPids(): Promise<number[]>;
  stop(): Promise<void>;
}

export interface StartEngineOptions {
  /** Short name (letters, digits, dashes); part of the temp dir name. */
  name: string;
  /** Parent dir for the engine's own temp dir (default os.tmpdir()). Keep it short: the socket path must fit 107 bytes. */
  baseDir?: string;
  /** Run dockerd inside this existing network namespace (made with `ip netns add`); joined with `nsenter --net`. */
  netns?: string;
  /** Receives dockerd's log tail when start fails and a line per lifecycle step. */
  log?: (line: string) => void;
  /** More dockerd flags, appended after the harness's own. */
  extraArgs?: string[];
  /** Bound for /_ping to answer (default 30 s). */
  startTimeoutMs?: number;
}

const live = new Set<EngineImpl>();

// A test process that dies without running `after` still takes its engines down: dockerd gets SIGTERM from the
// kernel when we exit (setpriv --pdeathsig) and, for a normal exit, from this hook.
process.on('exit', () => {
  for (const e of live) {
    try {
      // Only a dockerd that still runs: the pid of one that exited (a killed host) may be another process's now.
      if (e.child.exitCode !== null || e.child.signalCode !== null) continue;
      process.kill(e.pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
});

/** Stops every engine this process started and has not stopped yet. Use in `after`. */
export async function stopAllEngines(): Promise<void> {
  const errors: unknown[] = [];
  for (const e of [...live]) {
    try {
      await e.stop();
    } catch (err) {
      errors.push(err);
    }
  }
  if (errors.length > 0) throw new AggregateError(errors, `stopping ${errors.length} engine(s) failed`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A process that is a zombie (exited, not reaped) counts as gone. */
async function isRunning(pid: number): Promise<boolean> {
  if (!isAlive(pid)) return false;
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!(await isRunning(pid))) return true;
    await sleep(50);
  }
  return !(await isRunning(pid));
}

async function ping(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path: '/_ping', method: 'GET', timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}

async function logTail(logPath: string, lines = 40): Promise<string> {
  try {
    return (await readFile(logPath, 'utf8')).split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function unescapeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Mount points at or under `dir` in our mount namespace, deepest first. */
async function mountsUnder(dir: string): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const points = text
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    .map(unescapeMountPath)
    .filter((p) => p === dir || p.startsWith(dir + '/'));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/** PIDs (other than ours) whose command line mentions `marker` (our engine's unique base dir): containerd, shims. */
async function pidsMentioning(marker: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    try {
      const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8');
      if (cmdline.includes(marker)) pids.push(pid);
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

class EngineImpl implements Engine {
  readonly name: string;
  readonly baseDir: string;
  readonly socketPath: string;
  readonly dataRoot: string;
  readonly execRoot: string;
  readonly logPath: string;
  readonly #command: string[];
  readonly #startTimeoutMs: number;
  readonly #log: (line: string) => void;
  #child: ChildProcess | undefined;
  #exited: string | undefined;
  #stopping: Promise<void> | undefined;
  #restarting: Promise<void> | undefined;

  constructor(init: { name: string; baseDir: string; command: string[]; startTimeoutMs: number; log: (line: string) => void }) {
    this.name = init.name;
    this.baseDir = init.baseDir;
    this.socketPath = join(init.baseDir, 'docker.sock');
    this.dataRoot = join(init.baseDir, 'data');
    this.execRoot = join(init.baseDir, 'exec');
    this.logPath = join(init.baseDir, 'dockerd.log');
    this.#command = init.command;
    this.#startTimeoutMs = init.startTimeoutMs;
    this.#log = init.log;
  }

  get child(): ChildProcess {
    if (this.#child === undefined) throw new Error(`engine ${this.name}: dockerd not launched`);
    return this.#child;
  }

  get pid(): number {
    const pid = this.child.pid;
    if (pid === undefined) throw new Error(`engine ${this.name}: dockerd did not spawn`);
    return pid;
  }

  get mountInfoPath(): string {
    return `/proc/${this.pid}/mountinfo`;
  }

  /** Spawns dockerd and waits (bounded) for /_ping; throws with the tail of its log when it does not answer. */
  async launch(): Promise<void> {
    const fd = openSync(this.logPath, 'a');
    try {
      const [file, ...rest] = this.#command as [string, ...string[]];
      const env: NodeJS.ProcessEnv = { PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin' };
      this.#child = spawn(file, rest, { stdio: ['ignore', fd, fd], env });
    } finally {
      closeSync(fd);
    }
    const child = this.#child;
    this.#exited = undefined;
    child.on('exit', (code, signal) => {
      if (this.#child === child) this.#exited = `exited with code ${code} signal ${signal}`;
    });
    child.on('error', (err) => {
      if (this.#child === child) this.#exited = `failed to spawn: ${err.message}`;
    });
    if (child.pid === undefined) {
      // 'error' follows on the next tick; wait for it so the message names the cause.
      await sleep(50);
      throw new Error(`engine ${this.name}: dockerd ${this.#exited ?? 'did not spawn'}`);
    }
    this.#log(`engine ${this.name}: dockerd pid ${child.pid} at ${this.baseDir}`);
    const deadline = Date.now() + this.#startTimeoutMs;
    while (Date.now() < deadline && this.#exited === undefined) {
      if (await ping(this.socketPath)) return;
      await sleep(100);
    }
    const why = this.#exited ?? `no answer on /_ping within ${this.#startTimeoutMs} ms`;
    throw new Error(`engine ${this.name}: dockerd ${why}\n--- dockerd log tail ---\n${await logTail(this.logPath)}`);
  }

  stop(): Promise<void> {
    this.#stopping ??= (this.#restarting ?? Promise.resolve()).catch(() => undefined).then(() => this.#stop());
    return this.#stopping;
  }

  restart(): Promise<void> {
    if (this.#stopping !== undefined) return Promise.reject(new Error(`engine ${this.name}: stopped; it cannot be restarted`));
    if (this.#restarting !== undefined) return Promise.reject(new Error(`engine ${this.name}: already restarting`));
    const p = this.#restart().finally(() => {
      if (this.#restarting === p) this.#restarting = undefined;
    });
    this.#restarting = p;
    return p;
  }

  async #restart(): Promise<void> {
    const pid = this.#runningPid();
    if (pid !== null && (await isRunning(pid))) {
      throw new Error(`engine ${this.name}: dockerd (pid ${pid}) still runs; restart() is for an engine whose dockerd died`);
    }
    const problems: string[] = [];
    await this.#releaseLeftovers(problems);
    if (problems.length > 0) throw new Error(`engine ${this.name} restart: what the dead engine left could not be cleaned up: ${problems.join('; ')}`);
    // Gone after a reboot (/run is a tmpfs): the exec root (runc and containerd state, netns files), the pidfile
    // (its pid may belong to another process by now) and the socket.
    await rm(this.execRoot, { recursive: true, force: true, maxRetries: 3 });
    await rm(join(this.baseDir, 'docker.pid'), { force: true });
    await rm(this.socketPath, { force: true });
    this.#log(`engine ${this.name}: restarting dockerd on data root ${this.dataRoot}`);
    await this.launch();
  }

  /** runc's state dirs of this engine's containers: <exec root>/runtime-runc/<namespace>/<64 hex>. */
  async #runcContainers(): Promise<{ root: string; id: string }[]> {
    const runtimeRoot = join(this.execRoot, 'runtime-runc');
    const out: { root: string; id: string }[] = [];
    let namespaces: string[];
    try {
      namespaces = await readdir(runtimeRoot);
    } catch {
      return out;
    }
    for (const ns of namespaces) {
      const root = join(runtimeRoot, ns);
      try {
        for (const id of await readdir(root)) if (/^[0-9a-f]{64}$/.test(id)) out.push({ root, id });
      } catch {
        // not a dir
      }
    }
    return out;
  }

  async containerPids(): Promise<number[]> {
    const pids: number[] = [];
    for (const { root, id } of await this.#runcContainers()) {
      try {
        const state = JSON.parse(await readFile(join(root, id, 'state.json'), 'utf8')) as { init_process_pid?: unknown };
        if (typeof state.init_process_pid === 'number' && state.init_process_pid > 0) pids.push(state.init_process_pid);
      } catch {
        // being created or deleted
      }
    }
    return pids;
  }

  async #deleteRuncContainers(problems: string[]): Promise<void> {
    for (const { root, id } of await this.#runcContainers()) {
      try {
        await execFileP('runc', ['--root', root, 'delete', '--force', id], { timeout: 10_000 });
        this.#log(`engine ${this.name}: runc deleted leftover container ${id.slice(0, 12)}`);
      } catch (err) {
        problems.push(`runc delete ${id.slice(0, 12)}: ${String(err)}`);
      }
    }
  }

  /** Steps 3-5 of stop (and what restart cleans up): what a dead dockerd leaves behind, except the dirs. */
  async #releaseLeftovers(problems: string[]): Promise<void> {
    let containerdPid: number | undefined;
    try {
      containerdPid = Number((await readFile(join(this.execRoot, 'containerd', 'containerd.pid'), 'utf8')).trim()) || undefined;
    } catch {
      // dockerd may have died before starting containerd
    }
    // 3. Containers whose dockerd died without stopping them: runc (under our exec root) kills them and removes
    //    their cgroups. A container's init ignores SIGTERM from outside, so nothing else would end it.
    await this.#deleteRuncContainers(problems);
    // 4. Its containerd and any shim: dockerd stops them on a clean exit; after a SIGKILL they may linger.
    const leftovers = new Set(await pidsMentioning(this.baseDir));
    if (containerdPid !== undefined && (await isRunning(containerdPid))) leftovers.add(containerdPid);
    for (const pid of leftovers) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // gone
      }
    }
    for (const pid of leftovers) {
      if (!(await waitGone(pid, 5_000))) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
        await waitGone(pid, 2_000);
      }
    }
    // 5. Mounts left under our dirs (overlay merged dirs, netns files, the data-root bind), deepest first.
    for (let round = 0; round < 3; round++) {
      const mounts = await mountsUnder(this.baseDir);
      if (mounts.length === 0) break;
      for (const m of mounts) {
        try {
          await execFileP('umount', [m]);
        } catch {
          try {
            await execFileP('umount', ['-l', m]);
          } catch (err) {
            if (round === 2) problems.push(`umount ${m}: ${String(err)}`);
          }
        }
      }
    }
  }

  /** dockerd's pid while it may run; null when it never spawned. */
  #runningPid(): number | null {
    return this.#child?.pid ?? null;
  }

  async #stop(): Promise<void> {
    const problems: string[] = [];
    const pid = this.#runningPid();
    if (pid === null) {
      await rm(this.baseDir, { recursive: true, force: true, maxRetries: 3 });
      live.delete(this);
      return;
    }
    // 1. Remove all containers first: dockerd would otherwise wait up to 10 s per container that ignores SIGTERM.
    if (await isRunning(pid)) {
      const apiProblems: string[] = [];
      try {
        const failures = await new DockerRuntime({ socketPath: this.socketPath, requestTimeoutMs: 15_000 }).removeAllContainers();
        for (const f of failures) apiProblems.push(`remove ${f.id}: ${f.error}`);
      } catch (err) {
        apiProblems.push(String(err));
      }
      // A dockerd that was just SIGKILLed is still exiting for a few ms (its threads are torn down; /proc shows it
      // running): its listening socket accepts our connection and the exit resets it (ECONNRESET). Its containers
      // are then reaped by runc in step 3, so a failed API call is a problem only if dockerd is still alive.
      if (apiProblems.length > 0) {
        if (await waitGone(pid, 2_000)) this.#log(`engine ${this.name}: API gone while stopping (dockerd exited): ${apiProblems.join('; ')}`);
        else problems.push(...apiProblems);
      }
    }
    // 2. SIGTERM dockerd, SIGKILL after a bound.
    if (await isRunning(pid)) {
      this.child.kill('SIGTERM');
      if (!(await waitGone(pid, 15_000))) {
        problems.push('dockerd ignored SIGTERM for 15 s; sent SIGKILL');
        this.child.kill('SIGKILL');
        await waitGone(pid, 5_000);
      }
    }
    await this.#releaseLeftovers(problems);
    // 6. The dirs.
    const remaining = await mountsUnder(this.baseDir);
    if (remaining.length === 0) {
      await rm(this.baseDir, { recursive: true, force: true, maxRetries: 3 });
    } else {
      problems.push(`left ${this.baseDir} in place: still mounted ${remaining.join(', ')}`);
    }
    live.delete(this);
    this.#log(`engine ${this.name} stopped`);
    if (problems.length > 0) throw new Error(`engine ${this.name} stop: ${problems.join('; ')}`);
  }
}

/** Starts dockerd with its own data root, exec root, socket, pidfile and an empty daemon.json, no bridge, no
 *  iptables. Waits (bounded) for /_ping; on failure stops what started and throws with the tail of dockerd's log. */
export async function startEngine(opts: StartEngineOptions): Promise<Engine> {
  if (!/^[a-zA-Z0-9-]{1,24}$/.test(opts.name)) throw new Error(`engine name must be 1-24 letters, digits or dashes, got "${opts.name}"`);
  const log = opts.log ?? (() => undefined);
  const baseDir = await mkdtemp(join(opts.baseDir ?? tmpdir(), `twl-${opts.name}-`));
  const socketPath = join(baseDir, 'docker.sock');
  if (Buffer.byteLength(socketPath) > 100) throw new Error(`socket path too long for a unix socket: ${socketPath}`);
  const configFile = join(baseDir, 'daemon.json');
  // An explicit empty config: /etc/docker/daemon.json of the machine must not leak into a test engine.
  await writeFile(configFile, '{}\n');
  const args = [
    '--config-file', configFile,
    '--data-root', join(baseDir, 'data'),
    '--exec-root', join(baseDir, 'exec'),
    '--pidfile', join(baseDir, 'docker.pid'),
    '-H', `unix://${socketPath}`,
    '--storage-driver', 'overlay2',
    '--bridge=none',
    '--iptables=false',
  ];
  if (opts.netns === undefined) args.push('--ip-masq=false');
  args.push(...(opts.extraArgs ?? []));
  const dockerd = '/usr/sbin/dockerd';
  if (!existsSync(dockerd)) throw new Error(`${dockerd} not found: apt-get install -y docker.io`);
  // setpriv --pdeathsig: the kernel sends SIGTERM to dockerd when this process dies, even by SIGKILL.
  // Both setpriv and nsenter exec in place, so the child's pid is dockerd's.
  // In a network namespace: nsenter --net joins only the network namespace. (`ip netns exec` would also give dockerd
  // a private mount namespace with a fresh /sys, where the cgroup mounts dockerd needs are missing.)
  let inner = [dockerd, ...args];
  if (opts.netns !== undefined) {
    const nsFile = `/var/run/netns/${opts.netns}`;
    if (!/^[a-zA-Z0-9_.-]+$/.test(opts.netns) || !existsSync(nsFile)) {
      await rm(baseDir, { recursive: true, force: true });
      throw new Error(`engine ${opts.name}: network namespace "${opts.netns}" does not exist (${nsFile}); create it with ip netns add`);
    }
    inner = ['/usr/bin/nsenter', `--net=${nsFile}`, ...inner];
  }
  const command = existsSync('/usr/bin/setpriv') ? ['/usr/bin/setpriv', '--pdeathsig', 'TERM', ...inner] : inner;
  if (opts.netns !== undefined) log(`engine ${opts.name}: in netns ${opts.netns}`);
  const engine = new EngineImpl({ name: opts.name, baseDir, command, startTimeoutMs: opts.startTimeoutMs ?? 30_000, log });
  live.add(engine);
  try {
    await engine.launch();
  } catch (err) {
    try {
      await engine.stop();
    } catch (e) {
      log(`cleanup after failed start: ${String(e)}`);
    }
    throw err;
  }
  return engine;
}

/** Runs the docker CLI against an engine; rejects with stderr on failure. */
export async function dockerCli(engine: Pick<Engine, 'socketPath'>, args: string[], timeoutMs = 30_000): Promise<string> {
  try {
    const { stdout } = await execFileP('docker', ['-H', `unix://${engine.socketPath}`, ...args], { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (err) {
    const stderr = typeof err === 'object' && err !== null && 'stderr' in err ? String(err.stderr) : '';
    throw new Error(`docker ${args.join(' ')}: ${stderr || String(err)}`, { cause: err });
  }
}
