// Minimal flag parsing: `--name value` and `--name=value`; unknown flags are errors that name the flag. A flag given
// without a value is `true`.
import { ConfigError } from '../config/load.js';

/** `operands`: the arguments after the command that are not flags (`twinlayer ls web`); most commands take none. */
export interface ParsedArgs { command: string | undefined; operands: string[]; flags: Map<string, string> }

/** `switches` never take a value (`ls --json web`: web is the operand). */
export function parseArgs(argv: readonly string[], allowed: ReadonlySet<string>, switches: ReadonlySet<string> = new Set()): ParsedArgs {
  const flags = new Map<string, string>();
  let command: string | undefined;
  const operands: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) {
      if (command === undefined) command = arg;
      else operands.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq === -1 ? undefined : eq);
    if (!allowed.has(name)) throw new ConfigError(`unknown flag --${name}; see \`twinlayer help\``);
    let value: string | undefined = eq === -1 ? undefined : arg.slice(eq + 1);
    if (value === undefined && switches.has(name)) value = 'true';
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
  return { command, operands, flags };
}
