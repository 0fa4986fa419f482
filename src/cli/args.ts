// Minimal flag parsing: `--name value` and `--name=value`; unknown flags are errors that name the flag.
import { ConfigError } from '../config/load.js';

export interface ParsedArgs { command: string | undefined; flags: Map<string, string> }

export function parseArgs(argv: readonly string[], allowed: ReadonlySet<string>): ParsedArgs {
  const flags = new Map<string, string>();
  let command: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) {
      if (command !== undefined) throw new ConfigError(`unexpected argument ${JSON.stringify(arg)}`);
      command = arg;
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq === -1 ? undefined : eq);
    if (!allowed.has(name)) throw new ConfigError(`unknown flag --${name}; see \`twinlayer help\``);
    let value: string | undefined = eq === -1 ? undefined : arg.slice(eq + 1);
    if (value === undefined) {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) value = 'true';
      else {
        value = next;
        i++;
      }
    }
    flags.set(name, value);
  }
  return { command, flags };
}
