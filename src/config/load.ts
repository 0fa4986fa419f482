// Reads the optional config file (YAML or JSON) and TWINLAYER_* variables; env wins. A bad value names its key.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';

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
    parsed = parseYaml(text);
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

export function loadConfig(options: LoadOptions = {}): Config {
  const env = options.env ?? process.env;
  const file = options.file ?? env['TWINLAYER_CONFIG'];
  const raw: Record<string, unknown> = file ? readFile(file) : {};
  for (const key of configKeys) {
    const value = env[envName(key)];
    if (value !== undefined && value !== '') raw[key] = value;
  }
  for (const [k, v] of Object.entries(options.overrides ?? {})) if (v !== undefined) raw[k] = v;
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0];
    const key = issue?.path[0] === undefined ? undefined : String(issue.path[0]);
    const where = key === undefined ? '' : `config key \`${key}\` (env ${envName(key)})`;
    const got = key === undefined ? '' : `, got ${JSON.stringify(raw[key]) ?? 'nothing'}`;
    const reason = issue?.code === 'unrecognized_keys'
      ? `unknown config key(s): ${issue.keys.join(', ')}`
      : `${where}: ${issue?.message ?? 'invalid'}${got}`;
    throw new ConfigError(reason, key);
  }
  const config = result.data;
  if (config.debounceMaxMs < config.debounceQuietMs) {
    throw new ConfigError(`config key \`debounceMaxMs\` (env ${envName('debounceMaxMs')}): must be >= debounceQuietMs (${config.debounceQuietMs}), got ${config.debounceMaxMs}`, 'debounceMaxMs');
  }
  return Object.freeze(config);
}

