// The hashing pass-through: what goes by comes out unchanged, hashed (sha256, and the CRC32 a gzip trailer holds when
// asked) and counted, however it is cut into chunks.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';

import { hashTap } from '../../../src/streams/hash-tap.js';

async function through(tap: ReturnType<typeof hashTap>, chunks: Buffer[]): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(Readable.from(chunks), tap, new Writable({
    write(c: Buffer, _e, cb) {
      out.push(c);
      cb();
    },
  }));
  return Buffer.concat(out);
}

describe('hashTap', () => {
  it('passes the bytes on unchanged and gives their sha256, count and CRC32 (a gzip trailer\'s)', async () => {
    const body = randomBytes(300_000);
    const chunks = [body.subarray(0, 1), body.subarray(1, 70_000), body.subarray(70_000)];
    const tap = hashTap({ crc32: true });
    assert.ok((await through(tap, chunks)).equals(body));
    assert.equal(tap.bytes(), body.length);
    const gz = gzipSync(body);
    assert.equal(tap.crc(), gz.readUInt32LE(gz.length - 8));
    assert.equal(tap.digest(), `sha256:${createHash('sha256').update(body).digest('hex')}`);
  });

  it('gives the bare hex, and no CRC unless asked; an empty stream hashes to the empty sha256', async () => {
    const tap = hashTap();
    await through(tap, [Buffer.from('abc')]);
    assert.equal(tap.hex(), createHash('sha256').update('abc').digest('hex'));
    assert.equal(tap.crc(), 0);
    const empty = hashTap({ crc32: true });
    await through(empty, []);
    assert.deepEqual([empty.bytes(), empty.crc(), empty.hex()], [0, 0, createHash('sha256').digest('hex')]);
  });
});
