// The save stream's tap (streams/read-release.ts): the same bytes come out, in blocks of the size asked (the last one
// shorter), each a buffer of its own (not a view of the input's, not one reused for the next block), and the hook runs
// once per chunk read. Whether the young collection frees the heap is measured in bench/, not asserted here.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';

import { readRelease } from '../../../src/streams/read-release.js';

async function blocksOf(chunks: Buffer[], blockBytes: number, onChunk?: () => void): Promise<Buffer[]> {
  const out: Buffer[] = [];
  await pipeline(Readable.from(chunks), readRelease(blockBytes, onChunk), new Writable({
    write(c: Buffer, _e, cb) {
      out.push(c);
      cb();
    },
  }));
  return out;
}

describe('readRelease', () => {
  it('passes the same bytes on in blocks of blockBytes, the last one shorter, whatever the input\'s cut', async () => {
    const body = randomBytes(10_000);
    const chunks = [body.subarray(0, 1), body.subarray(1, 4_500), body.subarray(4_500, 4_501), body.subarray(4_501)];
    let calls = 0;
    const out = await blocksOf(chunks, 4096, () => calls++);
    assert.deepEqual(out.map((b) => b.length), [4096, 4096, 1808]);
    assert.ok(Buffer.concat(out).equals(body));
    assert.equal(calls, chunks.length);
  });

  it('emits copies: neither views of the input nor one buffer reused for the next block', async () => {
    const input = randomBytes(8192);
    const copy = Buffer.from(input);
    const out = await blocksOf([input], 4096);
    input.fill(0);
    assert.ok(Buffer.concat(out).equals(copy), 'a block changed with the input: it was not copied');
    assert.notEqual(out[0]!.buffer, out[1]!.buffer);
  });

  it('an exact multiple ends with a full block and nothing after it; an empty stream emits nothing', async () => {
    assert.deepEqual((await blocksOf([randomBytes(8192)], 4096)).map((b) => b.length), [4096, 4096]);
    assert.deepEqual(await blocksOf([], 4096), []);
  });

  it('leaves the process\'s globals as they were (gc is exposed to a context of its own)', async () => {
    await blocksOf([randomBytes(8192)], 1024);
    assert.equal((globalThis as { gc?: unknown }).gc, undefined);
  });

  it('refuses a block size that is not a positive integer', () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) assert.throws(() => readRelease(bad), TypeError);
  });
});
