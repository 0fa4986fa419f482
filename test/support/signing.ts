// Signatures for tests that build a Bucket in process: one key for the whole test process, not bound to a host (the
// tests write as several hosts), signing and trusted. Host-bound keys, key files and the env of spawned processes
// come from src/lab/group-keys.ts.
import { join } from 'node:path';
import { Signatures, SigningKey, writeNewSigningKey, type Bucket, type SignedKind, type TrustedKey } from '../../src/store/index.js';

export const testKey = SigningKey.generate(null);

/** Signs with testKey and trusts it (and `also`). */
export function testSignatures(also: readonly TrustedKey[] = []): Signatures {
  return new Signatures({ signer: testKey, trusted: [testKey.trusted, ...also], acceptUnsigned: false });
}

/** `body` as `signatures` would write it at `key` of `bucket` (a test crafting objects a Bucket would refuse to
 *  write: another generation's, a hostile field), as the bytes put into the store. */
export function sealed(bucket: Bucket, kind: SignedKind, key: string, body: object, signatures: Signatures = testSignatures()): Buffer {
  const group = bucket.layout.base.split('/').at(-1) ?? '';
  return Buffer.from(JSON.stringify(signatures.seal({ group, kind, key: key.slice(bucket.layout.base.length + 1) }, body)));
}

/** TWINLAYER_* settings for a spawned twinlayer process that signs with testKey and trusts it, so it reads what the
 *  test's in-process Buckets wrote: the key written to `<dir>/test.key` (0600). */
export async function testKeyEnv(dir: string): Promise<Record<string, string>> {
  const file = join(dir, 'test.key');
  await writeNewSigningKey(file, testKey);
  return { TWINLAYER_SIGNING_KEY_FILE: file, TWINLAYER_TRUSTED_KEYS: testKey.publicLine };
}
