// twinlayer CLI entry: agent | push | pull | status | keygen | pubkey | s3 | demo. Config errors exit 2 naming the key.
import { loadConfig } from '../config/load.js';
import { TwinlayerError } from '../log/errors.js';
import { createLogger } from '../log/logger.js';
import { parseArgs } from './args.js';
import { loggerFor, runAgent, runKeygen, runPubkey, runPull, runPush, runS3, runStatus } from './commands.js';
import { usage } from './usage.js';

const flagNames = new Set(['config', 'dir', 'listen', 'bucket', 'port-file', 'help', 'keep', 'runs', 'out', 'key']);

async function main(argv: readonly string[]): Promise<number> {
  const { command, flags } = parseArgs(argv, flagNames);
  if (command === undefined || command === 'help' || flags.has('help')) {
    process.stdout.write(usage);
    return command === undefined && !flags.has('help') ? 2 : 0;
  }
  if (command === 's3') {
    await runS3(flags, createLogger({ level: 'info' }));
    return 0;
  }
  if (command === 'keygen') return runKeygen(flags);
  if (command === 'pubkey') return runPubkey(flags);
  if (command === 'demo') {
    const { runDemo } = await import('../demo/index.js');
    return runDemo({ keep: flags.get('keep') === 'true' });
  }
  const config = loadConfig({ file: flags.get('config') });
  const log = loggerFor(config).child({ cmd: command, host: config.hostId });
  switch (command) {
    case 'agent':
      await runAgent(config, log);
      return 0;
    case 'push':
      await runPush(config, log);
      return 0;
    case 'pull':
      await runPull(config, log);
      return 0;
    case 'status':
      return runStatus(config);
    default:
      process.stderr.write(`unknown command ${JSON.stringify(command)}\n${usage}`);
      return 2;
  }
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (err) {
  const e = err as Error;
  const code = err instanceof TwinlayerError ? err.code : 'ERROR';
  // Every TwinlayerError that reaches the top is a start-up refusal (config, bucket, engine, lock, hook listen):
  // the running loops handle their own errors. Exit 2 tells systemd and scripts "fix the setup", not "retry".
  const startupError = err instanceof TwinlayerError;
  process.stderr.write(`twinlayer: ${e.message}${code !== 'ERROR' ? ` [${code}]` : ''}\n`);
  process.exitCode = startupError ? 2 : 1;
}
