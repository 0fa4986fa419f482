// Signed objects without any I/O: the canonical form and the signed bytes against fixed vectors (RFC 8032's test keys,
// RFC 8785's ordering), and what Signatures.open accepts and refuses: unsigned, an untrusted key, a flipped bit, a
// replay at another key, seq, kind or group, a malformed signature, hostile nesting; and the key lines of the config.
import assert from 'node:assert/strict';
import { createPublicKey, verify } from 'node:crypto';
import { chmod, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import {
  canonicalJson,
  keyIdOf,
  readSigningKeyFile,
  Signatures,
  signedBytes,
  SigningKey,
  TrustedKey,
  writeNewSigningKey,
  type ObjectPlace,
} from '../../../src/store/index.js';

/** RFC 8032 section 7.1, TEST 1 and TEST 2: secret seeds and their public keys. */
const RFC1 = { seed: '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', pub: 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a' };
const RFC2 = { seed: '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb', pub: '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c' };
const keyA = SigningKey.fromSeed(Buffer.from(RFC1.seed, 'hex'), 'host-a');
const keyB = SigningKey.fromSeed(Buffer.from(RFC2.seed, 'hex'), 'host-b');

const record = {
  version: 1, seq: 5, parentSeq: 2, generation: 3, container: 'web', digest: 'ab'.repeat(32), size: 213, kind: 'delta',
  counts: { files: 1, deletions: 0, bytes: 28 }, firstWriteAt: '2026-01-02T03:04:05.000Z', publishedAt: '2026-01-02T03:04:05.109Z', writer: 'host-a',
};
const place: ObjectPlace = { group: 'lab', kind: 'record', key: 'gen/3/journal/0000000000000005.json' };

/** The vector below, written out by hand: header lines, a blank line, then the record in canonical JSON. */
const SIGNED_TEXT = 'twinlayer signed object v1\ngroup lab\nkind record\nkey gen/3/journal/0000000000000005.json\nsigner 21fe31dfa154a261\n\n'
  + '{"container":"web","counts":{"bytes":28,"deletions":0,"files":1},"digest":"abababababababababababababababababababababababababababababababab",'
  + '"firstWriteAt":"2026-01-02T03:04:05.000Z","generation":3,"kind":"delta","parentSeq":2,"publishedAt":"2026-01-02T03:04:05.109Z","seq":5,"size":213,"version":1,"writer":"host-a"}';
/** Ed25519 of SIGNED_TEXT under RFC 8032 TEST 1's key (deterministic). */
const SIGNATURE = 'uz132HEF+zy3qGs/EXqdijtpr7MXqLSCkiAljhSJoYvDvwI1C7ddMJ179yR2OwCRrelvFZSTZiM42aVSTAvWDw==';

const policy = (opts: { trusted?: TrustedKey[]; acceptUnsigned?: boolean; signer?: SigningKey | null } = {}): Signatures =>
  new Signatures({ signer: opts.signer === undefined ? keyA : opts.signer, trusted: opts.trusted ?? [keyA.trusted, keyB.trusted], acceptUnsigned: opts.acceptUnsigned ?? false });

function refused(r: ReturnType<Signatures['open']>): string {
  assert.equal(r.ok, false, 'refused');
  return r.ok ? '' : r.reason;
}

describe('canonical JSON and the signed bytes', () => {
  it('sorts members by UTF-16 code units, writes numbers as ECMAScript does, keeps array order, no whitespace', () => {
    // RFC 8785 3.2.3's ordering: U+20AC, then the surrogate pair of U+1F600 (0xD83D), then U+FB33; by code point the
    // last two would be the other way round.
    const value = JSON.parse('{"\\ufb33":1,"\\ud83d\\ude00":2,"\\u20ac":3,"b":[true,null,"x\\u0000y",1e21,0.1,-0,1.5e-7],"a":{"z":{},"y":[]}}') as unknown;
    assert.equal(canonicalJson(value), '{"a":{"y":[],"z":{}},"b":[true,null,"x\\u0000y",1e+21,0.1,0,1.5e-7],"\u20ac":3,"\ud83d\ude00":2,"\ufb33":1}');
    assert.equal(canonicalJson({ '\u2028': 'line\u2028sep', q: '"\\' }), '{"q":"\\"\\\\","\u2028":"line\u2028sep"}');
  });

  it('refuses what JSON cannot hold and nesting deeper than 32 levels', () => {
    assert.throws(() => canonicalJson({ n: Number.NaN }), /number that JSON cannot hold/);
    assert.throws(() => canonicalJson({ n: 1n }), /bigint is not JSON/);
    let deep: unknown = 1;
    for (let i = 0; i < 32; i++) deep = [deep];
    assert.doesNotThrow(() => canonicalJson(deep), '32 nested arrays');
    assert.throws(() => canonicalJson([deep]), /deeper than 32/);
    assert.throws(() => canonicalJson({ a: deep }), /deeper than 32/);
  });

  it('signs header and body as the fixed vector says, verifiable with the RFC 8032 public key alone', () => {
    assert.equal(keyA.publicRaw.toString('hex'), RFC1.pub);
    assert.equal(keyB.publicRaw.toString('hex'), RFC2.pub);
    assert.equal(keyA.keyId, '21fe31dfa154a261');
    assert.equal(keyIdOf(Buffer.from(RFC1.pub, 'hex')), '21fe31dfa154a261');
    assert.equal(keyA.publicLine, 'host-a ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=');
    assert.equal(signedBytes({ ...place, keyId: keyA.keyId }, record).toString('utf8'), SIGNED_TEXT);
    const sealed = policy().seal(place, record);
    assert.deepEqual(sealed['signature'], { keyId: '21fe31dfa154a261', ed25519: SIGNATURE });
    // Independent of our code: node's own verify with the raw RFC key over the hand-written text.
    const pub = createPublicKey({ key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), Buffer.from(RFC1.pub, 'hex')]), format: 'der', type: 'spki' });
    assert.ok(verify(null, Buffer.from(SIGNED_TEXT, 'utf8'), pub, Buffer.from(SIGNATURE, 'base64')));
    // And RFC 8032 TEST 2's signature of the one byte 0x72 checks with TrustedKey.verify.
    const sig2 = '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00';
    assert.ok(keyB.trusted.verify(Buffer.from([0x72]), Buffer.from(sig2, 'hex')));
    assert.equal(keyB.sign(Buffer.from([0x72])).toString('hex'), sig2);
  });

  it('a key, group or kind with a line break or a space cannot pass for another header', () => {
    assert.throws(() => signedBytes({ ...place, key: 'gen/3/head.json\nkind claim', keyId: keyA.keyId }, {}), /not printable ASCII/);
    assert.throws(() => signedBytes({ ...place, group: 'a b', keyId: keyA.keyId }, {}), /not printable ASCII/);
  });
});

describe('Signatures.open', () => {
  const signed = (at: ObjectPlace = place, body: object = record, signer: SigningKey = keyA): Record<string, unknown> => policy({ signer }).seal(at, body);
  const roundTrip = (v: unknown): unknown => JSON.parse(JSON.stringify(v)) as unknown;

  it('accepts an object signed by a trusted key at its own place, and hands back the body without the signature', () => {
    const r = policy().open(place, roundTrip(signed()));
    assert.ok(r.ok);
    assert.deepEqual(r.body, record);
    assert.equal(r.signer?.keyId, keyA.keyId);
    assert.equal(r.signer.host, 'host-a');
  });

  it('refuses an unsigned object unless acceptUnsigned', () => {
    assert.match(refused(policy().open(place, roundTrip(record))), /^not signed/);
    const r = policy({ acceptUnsigned: true }).open(place, roundTrip(record));
    assert.ok(r.ok && r.signer === null);
  });

  it('refuses a signature by a key the group does not trust (acceptUnsigned takes it as unsigned)', () => {
    const stranger = SigningKey.generate('host-a');
    const obj = roundTrip(signed(place, record, stranger));
    assert.match(refused(policy().open(place, obj)), new RegExp(`signed by key ${stranger.keyId}, which is not among the group's trusted keys`));
    const lenient = policy({ acceptUnsigned: true }).open(place, obj);
    assert.ok(lenient.ok && lenient.signer === null);
    // A key removed from the list (rotated out) is a stranger from then on.
    assert.match(refused(policy({ trusted: [keyB.trusted] }).open(place, roundTrip(signed()))), /not among the group's trusted keys/);
  });

  it('refuses any flipped bit, in the signature or in the body, also under acceptUnsigned', () => {
    const obj = signed();
    const sig = Buffer.from((obj['signature'] as { ed25519: string }).ed25519, 'base64');
    for (const bit of [0, 7, 100, 511]) {
      const flipped = Buffer.from(sig);
      flipped[bit >> 3]! ^= 1 << (bit & 7);
      const tampered = { ...obj, signature: { keyId: keyA.keyId, ed25519: flipped.toString('base64') } };
      assert.match(refused(policy().open(place, roundTrip(tampered))), /does not verify/, `signature bit ${bit}`);
      assert.match(refused(policy({ acceptUnsigned: true }).open(place, roundTrip(tampered))), /does not verify/);
    }
    for (const change of [{ seq: 6 }, { digest: 'cd'.repeat(32) }, { size: 214 }, { writer: 'host-b' }, { extra: true }]) {
      assert.match(refused(policy().open(place, roundTrip({ ...obj, ...change }))), /does not verify/, JSON.stringify(change));
    }
    const { container: _dropped, ...without } = obj;
    assert.match(refused(policy().open(place, roundTrip(without))), /does not verify/);
  });

  it('refuses a signed object replayed at another seq, generation, container, kind or group', () => {
    const obj = roundTrip(signed());
    const elsewhere: ObjectPlace[] = [
      { ...place, key: 'gen/3/journal/0000000000000009.json' },
      { ...place, key: 'gen/4/journal/0000000000000005.json' },
      { ...place, kind: 'head', key: 'gen/3/head.json' },
      { ...place, group: 'other' },
      { group: 'lab', kind: 'spec', key: 'containers/web/spec.json' },
    ];
    for (const at of elsewhere) assert.match(refused(policy().open(at, obj)), /does not verify for this content at this key in group/, JSON.stringify(at));
    const spec = roundTrip(signed({ group: 'lab', kind: 'spec', key: 'containers/web/spec.json' }, { version: 1, name: 'web' }));
    assert.match(refused(policy().open({ group: 'lab', kind: 'spec', key: 'containers/db/spec.json' }, spec)), /does not verify/);
  });

  it('refuses a malformed signature field with bounded work: extra members, wrong sizes, not an object', () => {
    const good = signed()['signature'] as { keyId: string; ed25519: string };
    const bad: unknown[] = [
      null, 'sig', [good], { ...good, alg: 'none' }, { keyId: good.keyId }, { ...good, keyId: 'ABCDEF0123456789' },
      { ...good, ed25519: good.ed25519.slice(4) }, { ...good, ed25519: 'A'.repeat(1_000_000) },
    ];
    for (const field of bad) assert.match(refused(policy().open(place, { ...record, signature: field })), /signature field is malformed/, JSON.stringify(field).slice(0, 60));
    assert.match(refused(policy().open(place, [1, 2])), /not a JSON object/);
    assert.match(refused(policy().open(place, 'x')), /not a JSON object/);
  });

  it('refuses a body nested too deep to put in canonical form, without verifying', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 40; i++) deep = { d: deep };
    assert.match(refused(policy().open(place, { ...record, deep, signature: { keyId: keyA.keyId, ed25519: `${'A'.repeat(86)}==` } })), /canonical form: nested deeper/);
  });

  it('binds a key listed with a host to that host; a key listed without one signs for any host', () => {
    const a = keyA.trusted;
    assert.equal(Signatures.hostProblem(a, 'host-a'), null);
    assert.match(Signatures.hostProblem(a, 'host-b') ?? '', /written as host host-b but signed by the key of host host-a/);
    assert.equal(Signatures.hostProblem(new TrustedKey(keyA.publicRaw, null), 'host-b'), null);
    assert.equal(Signatures.hostProblem(null, 'host-b'), null);
  });

  it('seal: refuses a body that carries a signature already, and writing without a key unless acceptUnsigned', () => {
    assert.throws(() => policy().seal(place, { ...record, signature: 'x' }), /without a `signature` member/);
    assert.throws(() => policy({ signer: null }).seal(place, record), /no signing key/);
    assert.deepEqual(policy({ signer: null, acceptUnsigned: true }).seal(place, record), record);
    assert.throws(() => new Signatures({ signer: null, trusted: [keyA.trusted, new TrustedKey(keyA.publicRaw, null)], acceptUnsigned: false }), /each trusted key once/);
  });
});

describe('key lines and key files', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tl-keys-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('parses the lines keygen prints, with or without a host, and refuses anything else', () => {
    const withHost = TrustedKey.fromLine('  host-a ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=  ');
    assert.equal(withHost.host, 'host-a');
    assert.equal(withHost.keyId, '21fe31dfa154a261');
    assert.equal(withHost.line, 'host-a ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=');
    assert.equal(TrustedKey.fromLine('ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=').host, null);
    for (const line of [
      'host-a ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURr=', // same bytes, unused low bits set: not canonical
      'host-a ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHUR=',
      'host-a rsa:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=',
      'host a ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=',
      'host-a ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo= extra',
      '',
    ]) assert.throws(() => TrustedKey.fromLine(line), /Expected/, line);
  });

  it('writes a new key with mode 0600, never over an existing file, and reads it back as the same key', async () => {
    const file = join(dir, 'sub', 'signing.key');
    const key = SigningKey.generate('host-a');
    const oldMask = process.umask(0o022);
    try {
      await writeNewSigningKey(file, key);
    } finally {
      process.umask(oldMask);
    }
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal((await stat(join(dir, 'sub'))).mode & 0o777, 0o700);
    await assert.rejects(writeNewSigningKey(file, SigningKey.generate('host-a')), { code: 'SIGNING_KEY_EXISTS' });
    const read = await readSigningKeyFile(file, 'host-a');
    assert.equal(read.keyId, key.keyId);
    assert.equal(read.publicLine, key.publicLine);
  });

  it('refuses a key file others may read, a missing one, and one that is not an Ed25519 key', async () => {
    const file = join(dir, 'loose.key');
    await writeFile(file, SigningKey.generate('h').toPem(), { mode: 0o600 });
    await chmod(file, 0o640);
    await assert.rejects(readSigningKeyFile(file, 'h'), (err: Error & { code?: string }) => err.code === 'SIGNING_KEY_INVALID' && /may be read by others \(mode 0640\)/.test(err.message) && /chmod 600/.test(err.message));
    await assert.rejects(readSigningKeyFile(join(dir, 'none.key'), 'h'), { code: 'SIGNING_KEY_MISSING' });
    const { generateKeyPairSync } = await import('node:crypto');
    const ec = join(dir, 'ec.key');
    await writeFile(ec, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    await assert.rejects(readSigningKeyFile(ec, 'h'), /expected an Ed25519 private key, got ec/);
    const junk = join(dir, 'junk.key');
    await writeFile(junk, 'not a key', { mode: 0o600 });
    await assert.rejects(readSigningKeyFile(junk, 'h'), /not a PEM private key/);
  });
});
