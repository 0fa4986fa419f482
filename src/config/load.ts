// Reads the optional config file (YAML or JSON) and TWINLAYER_* variables; env wins. A bad value names its key.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { z } from 'zod';

import { TwinlayerError } from '../log/errors.js';
import { configKeys, configSchema, envName, type Config } from './schema.js';

export class ConfigError extends TwinlayerError {
  constructor(message: string, key?: string) {
    super('CONFIG_INVALID', message, key === undefined ? {} : { key });
  }
}

function readFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new ConfigError(`cannot read config file ${file}: ${(cause as Error).message}`);
  }
  let parsed: unknown;
  try {
    // Loaded only for a config file (a daemon under systemd usually has its env file alone): the YAML parser is a
    // sizeable part of what every start loads before the hook answers.
    const { parse } = createRequire(import.meta.url)('yaml') as typeof import('yaml');
    parsed = parse(text);
  } catch (cause) {
    throw new ConfigError(`config file ${file} is not valid YAML/JSON: ${(cause as Error).message}`);
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) throw new ConfigError(`config file ${file} must hold a mapping of keys`);
  return parsed as Record<string, unknown>;
}

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  file?: string | undefined;
  /** Values from command-line flags; they win over env and file. */
  overrides?: Record<string, unknown>;
}

/** The raw values: file, then env, then overrides. */
function gather(options: LoadOptions): Record<string, unknown> {
  const env = options.env ?? process.env;
  const file = options.file ?? env['TWINLAYER_CONFIG'];
  const raw: Record<string, unknown> = file ? readFile(file) : {};
  for (const key of configKeys) {
    const value = env[envName(key)];
    if (value !== undefined && value !== '') raw[key] = value;
  }
  for (const [k, v] of Object.entries(options.overrides ?? {})) if (v !== undefined) raw[k] = v;
  return raw;
}

/** Only the keys `twinlayer keygen` needs (hostId, signingKeyFile), from the same sources: it needs no bucket. */
export function loadKeyConfig(options: LoadOptions = {}): Readonly<{ hostId: string; signingKeyFile: string }> {
  const all = gather(options);
  const raw = { hostId: all['hostId'], signingKeyFile: all['signingKeyFile'] };
  const result = configSchema.pick({ hostId: true, signingKeyFile: true }).safeParse(raw);
  if (!result.success) throw configError(result.error, raw);
  return Object.freeze(result.data);
}

function configError(error: z.ZodError, raw: Record<string, unknown>): ConfigError {
  const issue = error.issues[0];
  const key = issue?.path[0] === undefined ? undefined : String(issue.path[0]);
  const where = key === undefined ? '' : `config key \`${key}\` (env ${envName(key)})`;
  const got = key === undefined ? '' : `, got ${JSON.stringify(raw[key]) ?? 'nothing'}`;
  const reason = issue?.code === 'unrecognized_keys'
    ? `unknown config key(s): ${issue.keys.join(', ')}`
    : `${where}: ${issue?.message ?? 'invalid'}${got}`;
  return new ConfigError(reason, key);
}

export function loadConfig(options: LoadOptions = {}): Config {
  const raw = gather(options);
  const result = configSchema.safeParse(raw);
  if (!result.success) throw configError(result.error, raw);
  const config = result.data;
  if (config.debounceMaxMs < config.debounceQuietMs) {
    throw new ConfigError(`config key \`debounceMaxMs\` (env ${envName('debounceMaxMs')}): must be >= debounceQuietMs (${config.debounceQuietMs}), got ${config.debounceMaxMs}`, 'debounceMaxMs');
  }
  return Object.freeze(config);
}

