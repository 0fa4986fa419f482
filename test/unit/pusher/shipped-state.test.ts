import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ShippedStateStore, shippedText } from '../../../src/pusher/shipped-state.js';
import type { SerializedIndex } from '../../../src/changeset/index.js';

describe('ShippedStateStore', () => {
  it('reads back what it saved from an index serialized once, pending and committed alike', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tl-shipped-'));
    try {
      const store = new ShippedStateStore(dir, 'g');
      const shipped: SerializedIndex = { version: 1, entries: [['a/b', { kind: 'file', size: 3 }], ['c "quoted"\n', { kind: 'dir' }]] };
      const text = shippedText(shipped);
      const state = { generation: 2, lastSeq: 7, digest: 'ab'.repeat(32), containerId: 'c1', lastFullAt: '2026-12-07T00:00:00.000Z', sinceFull: { deltas: 1, bytes: 10 } };
      await store.save('web', true, state, text);
      await store.save('web', false, { ...state, lastSeq: 8 }, text);
      assert.deepEqual(await store.load('web', true), { version: 1, ...state, shipped });
      assert.deepEqual(await store.load('web', false), { version: 1, ...state, lastSeq: 8, shipped });
      // The file is one JSON document, as JSON.stringify of the whole state would write it.
      assert.deepEqual(JSON.parse(await readFile(join(dir, 'push', 'g', 'web.json'), 'utf8')), { version: 1, ...state, lastSeq: 8, shipped });
      await store.clearPending('web');
      assert.equal(await store.load('web', true), null);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
