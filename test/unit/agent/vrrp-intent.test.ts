// The latest VRRP state wins: keepalived runs notify scripts asynchronously, so calls arrive late, twice and out of
// order; notify.sh's `at` stamp orders them, and the state file it keeps is read at start.
import { describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readVrrpStateFile, VrrpIntent, type VrrpEvent, type VrrpState } from '../../../src/agent/index.js';

const ev = (state: VrrpState, at: bigint | null): VrrpEvent => ({ state, at, receivedAt: Date.now(), source: 'hook' });

describe('VrrpIntent', () => {
  it('takes newer stamps, refuses older ones and repeats', () => {
    const i = new VrrpIntent();
    assert.equal(i.state, null);
    assert.equal(i.offer(ev('BACKUP', 10n)), 'accepted');
    assert.equal(i.offer(ev('MASTER', 20n)), 'accepted');
    assert.equal(i.offer(ev('MASTER', 20n)), 'duplicate');
    assert.equal(i.offer(ev('BACKUP', 15n)), 'stale', 'a BACKUP stamped before the MASTER arrives late');
    assert.equal(i.offer(ev('BACKUP', 20n)), 'stale', 'the same stamp with another state cannot be ordered: the first wins');
    assert.equal(i.state, 'MASTER');
    assert.equal(i.offer(ev('FAULT', 21n)), 'accepted');
    assert.equal(i.state, 'FAULT');
  });

  it('without stamps, arrival order; a stamp after unstamped calls is taken', () => {
    const i = new VrrpIntent();
    assert.equal(i.offer(ev('MASTER', null)), 'accepted');
    assert.equal(i.offer(ev('BACKUP', null)), 'accepted');
    assert.equal(i.offer(ev('MASTER', 5n)), 'accepted');
    assert.equal(i.offer(ev('BACKUP', null)), 'accepted', 'an unstamped call cannot be ordered: it counts as the newest');
    assert.equal(i.state, 'BACKUP');
  });

  it('orders 20-digit stamps numerically, not as text', () => {
    const i = new VrrpIntent();
    assert.equal(i.offer(ev('MASTER', 10000000000000000000n)), 'accepted');
    assert.equal(i.offer(ev('BACKUP', 9999999999999999999n)), 'stale');
  });
});

describe('readVrrpStateFile', () => {
  it('reads "STATE AT", is null when absent, and names the file when it does not parse', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tl-vrrp-'));
    try {
      const file = join(dir, 'vrrp-state');
      assert.equal(await readVrrpStateFile(file), null);
      await writeFile(file, 'BACKUP 1764620000123456789\n');
      const got = await readVrrpStateFile(file);
      assert.equal(got?.state, 'BACKUP');
      assert.equal(got?.at, 1764620000123456789n);
      assert.equal(got?.source, 'state-file');
      for (const bad of ['', 'MASTER', 'master 1', 'PROMOTE 1', 'MASTER 1 extra', 'MASTER 123456789012345678901']) {
        await writeFile(file, bad);
        await assert.rejects(readVrrpStateFile(file), (err: unknown) => err instanceof Error && err.message.includes(file), JSON.stringify(bad));
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
