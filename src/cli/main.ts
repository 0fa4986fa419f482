// twinlayer CLI entry: agent | push | pull | status | ls | restore | keygen | pubkey | s3 | demo. Config errors exit 2 naming the key.
// Each command's modules (and so its dependencies: the AWS SDK, dockerode, hono, chokidar, s3rver, the lab) are
// imported when that command runs, not at every start.
import { ConfigError, loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { TwinlayerError } from '../log/errors.js';
import { createLogger, type Logger } from '../log/logger.js';
import { parseArgs } from './args.js';
import { importDevOnly } from './dev-only.js';
import { usage } from './usage.js';

const flagNames = new Set(['config', 'dir', 'listen', 'bucket', 'port-file', 'help', 'keep', 'runs', 'out', 'key', 'service', 'json', 'all', 'generation', 'to', 'at', 'seq', 'image', 'force', 'dry-run']);
const switches = new Set(['help', 'json', 'all', 'dry-run', 'force']);
/** The commands that take operands after them; any other refuses them. */
const takesOperands = new Set(['ls', 'restore']);
/** Flags of some commands only, by command. */
const commandFlags: Record<string, string[]> = {
  json: ['ls', 'gc'], all: ['ls'], generation: ['ls', 'restore'], to: ['restore'], at: ['restore'], seq: ['restore'], image: ['restore'], force: ['restore'], 'dry-run': ['gc'],
};

/** The commands that run from a config, each loaded on use. */
const daemons: Record<string, () => Promise<{ run: (config: Config, log: Logger) => Promise<number | void> }>> = {
  agent: () => import('./agent.js'),
  push: () => import('./push.js'),
  pull: () => import('./pull.js'),
  status: () => import('./status.js'),
};

async function main(argv: readonly string[]): Promise<number> {
  const { command, operands, flags } = parseArgs(argv, flagNames, switches);
  if (command === undefined || command === 'help' || flags.has('help')) {
    process.stdout.write(usage);
    return command === undefined && !flags.has('help') ? 2 : 0;
  }
  if (operands.length > 0 && !takesOperands.has(command)) throw new ConfigError(`unexpected argument ${JSON.stringify(operands[0])}`);
  for (const [f, commands] of Object.entries(commandFlags)) {
    if (flags.has(f) && !commands.includes(command)) throw new ConfigError(`--${f} is a flag of ${commands.map((c) => `\`twinlayer ${c}\``).join(' and ')} only`);
  }
  if (command === 's3') {
    const { run } = await import('./s3.js');
    await run(flags, createLogger({ level: 'info' }));
    return 0;
  }
  if (command === 'keygen' || command === 'pubkey') {
    const { runKeygen, runPubkey } = await import('./keys.js');
    return command === 'keygen' ? runKeygen(flags) : runPubkey(flags);
  }
  if (command === 'demo') {
    return importDevOnly('demo', 'runs the lab with the embedded S3 server', ' (or run `npm run demo`, which does)', async () => {
      const { runDemo } = await import('../demo/index.js');
      return runDemo({ keep: flags.get('keep') === 'true', service: flags.get('service') });
    });
  }
  if (command === 'ls') {
    const config = loadConfig({ file: flags.get('config') });
    const { run } = await import('./ls.js');
    return run(config, createLogger({ level: config.logLevel === 'debug' ? 'debug' : 'warn' }).child({ cmd: 'ls', host: config.hostId }), operands, flags);
  }
  if (command === 'gc') {
    const config = loadConfig({ file: flags.get('config') });
    const { run } = await import('./gc.js');
    return run(config, createLogger({ level: config.logLevel === 'debug' ? 'debug' : 'warn' }).child({ cmd: 'gc', host: config.hostId }), flags);
  }
  if (command === 'restore') {
    const config = loadConfig({ file: flags.get('config') });
    const { run } = await import('./restore.js');
    return run(config, createLogger({ level: config.logLevel === 'debug' ? 'debug' : 'info' }).child({ cmd: 'restore', host: config.hostId }), operands, flags);
  }
  const load = daemons[command];
  if (load === undefined) {
    process.stderr.write(`unknown command ${JSON.stringify(command)}\n${usage}`);
    return 2;
  }
  const config = loadConfig({ file: flags.get('config') });
  const log = createLogger({ level: config.logLevel }).child({ cmd: command, host: config.hostId });
  const { run } = await load();
  return (await run(config, log)) ?? 0;
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (err) {
  const e = err as Error;
  const code = err instanceof TwinlayerError ? err.code : 'ERROR';
  // Every TwinlayerError that reaches the top is a start-up refusal (config, bucket, engine, lock, hook listen,
  // missing development dependencies): the running loops handle their own errors. Exit 2 tells systemd and scripts
  // "fix the setup", not "retry".
  const startupError = err instanceof TwinlayerError;
  process.stderr.write(`twinlayer: ${e.message}${code !== 'ERROR' ? ` [${code}]` : ''}\n`);
  process.exitCode = startupError ? 2 : 1;
}
