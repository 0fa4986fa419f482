// infra/systemd/twinlayer.env.example stays in step with the config schema: every key is documented there and
// every example value it shows is one the schema accepts.
import { strict as assert } from 'node:assert';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { loadConfig } from '../../../src/config/load.js';
import { configKeys, envName } from '../../../src/config/schema.js';

const EXAMPLE = fileURLToPath(new URL('../../../infra/systemd/twinlayer.env.example', import.meta.url));

describe('twinlayer.env.example', () => {
  it('names every configuration key and its values load', async () => {
    const text = await readFile(EXAMPLE, 'utf8');
    const env: Record<string, string> = {};
    for (const line of text.split('\n')) {
      const m = /^#?(TWINLAYER_[A-Z_]+)=(.*)$/.exec(line);
      if (m?.[1] !== undefined && m[2] !== undefined) env[m[1]] = m[2];
    }
    for (const key of configKeys) assert.ok(envName(key) in env, `${envName(key)} is documented`);
    const config = loadConfig({ env });
    assert.equal(config.bucket, 'twinlayer');
    assert.equal(config.hookListen, '127.0.0.1:7450');
    assert.equal(config.debounceQuietMs, 50);
  });
});
