// The subcommands. Each builds its units from the frozen config and runs until a signal.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Agent, AgentHookHandler } from '../agent/index.js';
import { loadKeyConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { twinPolicyOf } from '../config/twin-policy.js';
import { createLogger, type Logger } from '../log/logger.js';
import { Pusher } from '../pusher/index.js';
import { Puller } from '../puller/index.js';
import { startS3Server } from '../s3server/index.js';
import { readSigningKeyFile, SigningKey, writeNewSigningKey } from '../store/index.js';
import { createHookApp, serveHook } from '../vrrp-hook/index.js';
import { openBucket, openDocker } from './runtime-deps.js';
import { onShutdown } from './shutdown.js';

export function loggerFor(config: Config): Logger {
  return createLogger({ level: config.logLevel });
}

export async function runPush(config: Config, log: Logger): Promise<void> {
  const { bucket, store } = await openBucket(config, log, 'push');
  const pusher = new Pusher({
    runtime: openDocker(config, log),
    bucket,
    log,
    hostId: config.hostId,
    group: config.group,
    label: config.label,
    stateDir: config.stateDir,
    excludes: config.excludes,
    debounceQuietMs: config.debounceQuietMs,
    debounceMaxMs: config.debounceMaxMs,
    uploadConcurrency: config.uploadConcurrency,
    reconcileIntervalMs: config.reconcileIntervalMs,
  });
  const done = onShutdown(log, async () => {
    await pusher.stop();
    store.destroy();
  });
  await pusher.start();
  await done;
}

export async function runPull(config: Config, log: Logger): Promise<void> {
  const { bucket, store } = await openBucket(config, log, 'pull');
  const puller = new Puller({
    runtime: openDocker(config, log),
    bucket,
    log,
    group: config.group,
    stateDir: config.stateDir,
    pollIntervalMs: config.pollIntervalMs,
    downloadConcurrency: config.downloadConcurrency,
    startConcurrency: config.startConcurrency,
    twinPolicy: twinPolicyOf(config),
    trustUnsignedSpecs: config.trustUnsignedSpecs,
  });
  await puller.open();
  const app = createHookApp({
    token: config.hookToken,
    promoter: puller,
    log: log.child({ unit: 'vrrp-hook' }),
    finalizeDeadlineMs: config.finalizeDeadlineMs,
    bootTimeoutMs: config.bootTimeoutMs,
  });
  const { shutdown } = await serveUntilShutdown(config, log, app, puller, store);
  puller.start();
  await shutdown;
}

/** Serves the hook; a failed listen stops the daemon and throws. Resolves with the shutdown (first signal: close the
 *  hook, stop the daemon, release the S3 client). */
async function serveUntilShutdown(config: Config, log: Logger, app: Parameters<typeof serveHook>[0], daemon: { stop(): Promise<void> }, store: { destroy(): void }): Promise<{ shutdown: Promise<void> }> {
  let server: Awaited<ReturnType<typeof serveHook>>;
  try {
    server = await serveHook(app, { listen: config.hookListen, token: config.hookToken, allowNoToken: config.hookAllowNoToken });
  } catch (err) {
    await daemon.stop();
    throw err;
  }
  log.info('hook listening', { address: server.address, port: server.port });
  const shutdown = onShutdown(log, async () => {
    await server.close();
    await daemon.stop();
    store.destroy();
  });
  return { shutdown };
}

/** `twinlayer agent`: one process per host, either role, serving the hook on every host. */
export async function runAgent(config: Config, log: Logger): Promise<void> {
  const { bucket, store } = await openBucket(config, log, 'agent', { requireReachable: false });
  const agent = new Agent({
    runtime: openDocker(config, log),
    bucket,
    log,
    hostId: config.hostId,
    group: config.group,
    label: config.label,
    stateDir: config.stateDir,
    excludes: config.excludes,
    debounceQuietMs: config.debounceQuietMs,
    debounceMaxMs: config.debounceMaxMs,
    uploadConcurrency: config.uploadConcurrency,
    reconcileIntervalMs: config.reconcileIntervalMs,
    pollIntervalMs: config.pollIntervalMs,
    downloadConcurrency: config.downloadConcurrency,
    startConcurrency: config.startConcurrency,
    twinPolicy: twinPolicyOf(config),
    trustUnsignedSpecs: config.trustUnsignedSpecs,
    finalizeDeadlineMs: config.finalizeDeadlineMs,
    bootTimeoutMs: config.bootTimeoutMs,
    vrrpStateFile: config.vrrpStateFile,
    fenceIntervalMs: config.fenceIntervalMs,
    backupSettleMs: config.backupSettleMs,
    stopTimeoutSeconds: config.stopTimeoutSeconds,
  });
  await agent.open();
  const app = createHookApp({ token: config.hookToken, handler: new AgentHookHandler(agent), log: log.child({ unit: 'vrrp-hook' }) });
  // The hook listens before the first role is decided: keepalived's calls are taken (and ordered) from the start.
  const { shutdown } = await serveUntilShutdown(config, log, app, agent, store);
  await agent.start();
  log.info('agent started', { role: agent.role });
  await shutdown;
}

/** Prints this host's pusher status (its status file) and puller status (through the hook), whichever exist. */
export async function runStatus(config: Config): Promise<number> {
  const out: Record<string, unknown> = {};
  const pushFile = join(config.stateDir, 'push', config.group, 'status.json');
  const pushText = await readFile(pushFile, 'utf8').catch(() => null);
  if (pushText !== null) out['pusher'] = JSON.parse(pushText) as unknown;
  const url = `http://${config.hookListen}/v1/status`;
  const headers: Record<string, string> = config.hookToken ? { authorization: `Bearer ${config.hookToken}` } : {};
  try {
    const res = await fetch(url, { headers, signal: AbortSignal.timeout(5000) });
    out['puller'] = res.ok ? await res.json() : { error: `hook answered HTTP ${res.status}` };
  } catch (err) {
    if (pushText === null) throw new Error(`no pusher status at ${pushFile} and no puller hook at ${url}: ${(err as Error).message}`, { cause: err });
  }
  process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  return 0;
}

export async function runS3(flags: Map<string, string>, log: Logger): Promise<void> {
  const listen = flags.get('listen') ?? '127.0.0.1:9000';
  const m = /^(.+):(\d+)$/.exec(listen);
  if (!m) throw new Error(`--listen: expected HOST:PORT, got ${JSON.stringify(listen)}`);
  const dir = flags.get('dir') ?? './s3-data';
  const buckets = (flags.get('bucket') ?? 'twinlayer').split(',').filter(Boolean);
  const server = await startS3Server({ dir, host: m[1]!, port: Number(m[2]), buckets, silent: true });
  log.info('embedded S3 server listening (development and tests only)', { endpoint: server.endpoint, dir, buckets });
  const portFile = flags.get('port-file');
  if (portFile) await writeFile(portFile, String(server.port));
  await onShutdown(log, () => server.close());
}

/** `twinlayer keygen`: a new private key for this host at `--out` (default: signingKeyFile), mode 0600, never over an
 *  existing file; prints the public key line for trustedKeys on stdout. */
export async function runKeygen(flags: Map<string, string>): Promise<number> {
  const { hostId, signingKeyFile } = loadKeyConfig({ file: flags.get('config') });
  const out = flags.get('out') ?? signingKeyFile;
  const key = SigningKey.generate(hostId);
  await writeNewSigningKey(out, key);
  process.stdout.write(`${key.publicLine}\n`);
  process.stderr.write(`twinlayer: wrote the private key of ${hostId} to ${out} (mode 0600); add the line above to trustedKeys on every host of the group\n`);
  return 0;
}

/** `twinlayer pubkey`: the trustedKeys line of this host's private key (`--key`, default: signingKeyFile). */
export async function runPubkey(flags: Map<string, string>): Promise<number> {
  const { hostId, signingKeyFile } = loadKeyConfig({ file: flags.get('config') });
  const key = await readSigningKeyFile(flags.get('key') ?? signingKeyFile, hostId);
  process.stdout.write(`${key.publicLine}\n`);
  return 0;
}
