// A chunk that does not compress is framed by hand as one gzip member of stored blocks: gunzip (and zcat of a pack)
// must read it as zlib's own; the standby's reader takes exactly that form (zlib's level 0 included) and hands
// anything else, or anything damaged, back to zlib.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';

import { maxChunkBytes, maxStoredChunkBytes } from '../../../src/changeset/index.js';
import { readStoredMember, storedMemberBytes, writeStoredMember } from '../../../src/store/gzip-stored.js';

/** `bytes` cut into parts at the given lengths (the rest in the last). */
function cut(bytes: Buffer, lengths: number[]): Buffer[] {
  const parts: Buffer[] = [];
  let at = 0;
  for (const n of lengths) {
    parts.push(bytes.subarray(at, at + n));
    at += n;
  }
  parts.push(bytes.subarray(at));
  return parts;
}

function frame(bytes: Buffer, lengths: number[] = []): Buffer {
  const out = Buffer.alloc(storedMemberBytes(bytes.length) + 7, 0xee);
  const n = writeStoredMember(cut(bytes, lengths), bytes.length, out, 3);
  assert.equal(n, storedMemberBytes(bytes.length));
  assert.equal(out[2], 0xee, 'nothing written before `at`');
  assert.equal(out[3 + n], 0xee, 'nothing written past the member');
  return out.subarray(3, 3 + n);
}

describe('stored gzip members', () => {
  for (const size of [0, 1, 65534, 65535, 65536, 131071, 200_000]) {
    it(`${size} bytes in parts read back through gunzip and through the reader`, () => {
      const bytes = randomBytes(size);
      const member = frame(bytes, size > 10 ? [1, 7, Math.floor(size / 2)] : []);
      assert.deepEqual(gunzipSync(member), bytes);
      assert.deepEqual(readStoredMember(member, size), bytes);
    });
  }

  it('members back to back inflate as one stream (zcat of a pack)', () => {
    const a = randomBytes(70_000);
    const b = randomBytes(3);
    assert.deepEqual(gunzipSync(Buffer.concat([frame(a), frame(b)])), Buffer.concat([a, b]));
  });

  it('takes no more room than the chunk list allows a stored chunk', () => {
    for (const size of [0, 1, 32 * 1024, 128 * 1024, maxChunkBytes]) assert.ok(storedMemberBytes(size) <= maxStoredChunkBytes(size), `${size} bytes`);
  });

  it('reads zlib\'s own level-0 members, and leaves deflated ones to zlib', () => {
    const bytes = randomBytes(150_000);
    assert.deepEqual(readStoredMember(gzipSync(bytes, { level: 0 }), bytes.length), bytes);
    assert.equal(readStoredMember(gzipSync(Buffer.alloc(150_000, 'a'), { level: 1 }), 150_000), null);
  });

  it('hands back to zlib anything damaged, longer than allowed or with bytes left over', () => {
    const bytes = randomBytes(100_000);
    const member = frame(bytes);
    assert.equal(readStoredMember(member, bytes.length - 1), null, 'more bytes than the chunk may have');
    const crc = Buffer.from(member);
    crc[crc.length - 8]! ^= 1;
    assert.equal(readStoredMember(crc, bytes.length), null, 'CRC-32');
    const body = Buffer.from(member);
    body[5000]! ^= 1;
    assert.equal(readStoredMember(body, bytes.length), null, 'a byte of the data');
    const nlen = Buffer.from(member);
    nlen[13]! ^= 1;
    assert.equal(readStoredMember(nlen, bytes.length), null, 'a block length and its complement disagree');
    const notFinal = Buffer.from(member);
    notFinal[10 + 5 + 65535] = 0;
    assert.equal(readStoredMember(notFinal, bytes.length), null, 'no final block');
    const flagged = Buffer.from(member);
    flagged[3] = 8;
    assert.equal(readStoredMember(flagged, bytes.length), null, 'a header with a name field');
    assert.equal(readStoredMember(Buffer.concat([member, Buffer.alloc(1)]), bytes.length), null, 'a byte after the member');
    assert.equal(readStoredMember(member.subarray(0, member.length - 1), bytes.length), null, 'one byte short');
    assert.equal(readStoredMember(Buffer.alloc(0), 0), null);
  });

  it('whatever damaged member the reader takes, gunzip reads as the same bytes (seeded mutations)', () => {
    // A small deterministic PRNG (mulberry32): the same mutations every run, and a failure names its round.
    let state = 0x9e3779b9;
    const next = (): number => {
      state = (state + 0x6d2b79f5) | 0;
      let t = Math.imul(state ^ (state >>> 15), 1 | state);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    let taken = 0;
    for (let round = 0; round < 10_000; round++) {
      const size = Math.floor(next() * 200);
      const bytes = randomBytes(size);
      const member = Buffer.from(frame(bytes, size > 2 ? [Math.floor(next() * size)] : []));
      let damaged: Buffer = member;
      const kind = Math.floor(next() * 3);
      if (kind === 0) for (let k = 1 + Math.floor(next() * 3); k > 0; k--) damaged[Math.floor(next() * damaged.length)] = Math.floor(next() * 256);
      else if (kind === 1) damaged = member.subarray(0, Math.floor(next() * member.length));
      else damaged = Buffer.concat([member, randomBytes(1 + Math.floor(next() * 8))]);
      const read = readStoredMember(damaged, 256);
      if (read === null) continue;
      taken++;
      let inflated: Buffer | null;
      try {
        inflated = gunzipSync(damaged);
      } catch {
        inflated = null;
      }
      assert.ok(inflated !== null && inflated.equals(read), `round ${round}: the reader took a member gunzip ${inflated === null ? 'refuses' : 'reads otherwise'}`);
    }
    assert.ok(taken > 30, `the mutations reached the reader's accepting path (${taken} taken)`);
  });
});
