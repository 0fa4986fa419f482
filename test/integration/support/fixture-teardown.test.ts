// The integration fixtures (test/support/puller.ts, agent.ts) stop what they started when their setup fails half-way:
// here the engine's start fails (a name startEngine refuses) after the temp dir, the embedded S3 server and the fault
// proxy were started; the failure is the engine's, and nothing the fixture made is left in the temp dir.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';

import { startAgentFixture } from '../../support/agent.js';
import { startPullerFixture } from '../../support/puller.js';

/** Entries of the temp dir whose name starts with `prefix`. */
const leftUnder = async (prefix: string): Promise<string[]> => (await readdir(tmpdir())).filter((n) => n.startsWith(prefix));

describe('a fixture whose setup fails half-way', () => {
  it('puller: stops the S3 server and the proxy, removes its temp dir, and rethrows the engine\'s error', async () => {
    const prefix = `tl-fx-puller-${process.pid}-`;
    await assert.rejects(startPullerFixture({ tmpPrefix: prefix, engine: 'not a name!', proxy: true }), /engine name must be/);
    assert.deepEqual(await leftUnder(prefix), [], 'the temp dir is removed');
  });

  it('agent: stops the S3 server (its data in the temp dir), removes the temp dir, and rethrows the engine\'s error', async () => {
    const prefix = `tl-fx-agent-${process.pid}-`;
    await assert.rejects(startAgentFixture({ tmpPrefix: prefix, engine: 'not a name!', bucket: 'tl-fixture-teardown' }), /engine name must be/);
    assert.deepEqual(await leftUnder(prefix), [], 'the temp dir is removed');
  });
});
