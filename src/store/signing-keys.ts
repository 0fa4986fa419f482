// Ed25519 keys of a group: each host signs what it writes with its own private key (a PEM file, mode 0600, made by
// `twinlayer keygen`); the configuration lists the group's public keys, one line per key as keygen prints it:
//   host-a ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=
// The host name is optional; when given, the key may only sign objects written as that host. A key's id is the
// first 16 hex characters of the sha256 of its 32 raw bytes: it only says which trusted key to try (verification
// always uses the trusted key itself), so the configuration is just the list of keys.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { mkdir, open, readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';

import { TwinlayerError } from '../log/errors.js';
import { writerRe } from './types.js';

/** DER SubjectPublicKeyInfo of an Ed25519 key, up to the 32 raw key bytes (RFC 8410). */
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
/** DER PKCS#8 of an Ed25519 private key, up to the 32-byte seed (RFC 8410). */
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/** `[<host> ]ed25519:<32 bytes, base64>`. */
export const publicKeyLineRe = /^(?:([A-Za-z0-9._-]{1,64})[ \t]+)?ed25519:([A-Za-z0-9+/]{43}=)$/;
export const keyIdRe = /^[0-9a-f]{16}$/;
/** A PEM private key is ~120 bytes; a file much larger is not one. */
const MAX_KEY_FILE_BYTES = 16 * 1024;

export class SigningKeyError extends TwinlayerError {
  constructor(code: 'SIGNING_KEY_MISSING' | 'SIGNING_KEY_INVALID' | 'SIGNING_KEY_EXISTS', message: string, context: { path?: string; hint?: string } = {}) {
    super(code, message, context);
  }
}

export function keyIdOf(raw: Buffer): string {
  return createHash('sha256').update(raw).digest('hex').slice(0, 16);
}

export function formatPublicKeyLine(raw: Buffer, host: string | null): string {
  return `${host === null ? '' : `${host} `}ed25519:${raw.toString('base64')}`;
}

function rawOf(publicKey: KeyObject): Buffer {
  return publicKey.export({ format: 'der', type: 'spki' }).subarray(SPKI_PREFIX.length);
}

/** A public key the group trusts, and the host it may sign for (null: any host). */
export class TrustedKey {
  readonly keyId: string;
  readonly host: string | null;
  readonly raw: Buffer;
  readonly #key: KeyObject;

  constructor(raw: Buffer, host: string | null) {
    if (raw.length !== 32) throw new TypeError(`Expected an Ed25519 public key of 32 bytes, got ${raw.length}`);
    if (host !== null && (!writerRe.test(host) || host === '.' || host === '..')) throw new TypeError(`Expected a host id of 1-64 of A-Z a-z 0-9 . _ -, got ${JSON.stringify(host)}`);
    this.raw = Buffer.from(raw);
    this.host = host;
    this.keyId = keyIdOf(raw);
    this.#key = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
  }

  /** A configuration line; TypeError naming the expected form when it is not one. */
  static fromLine(line: string): TrustedKey {
    const m = publicKeyLineRe.exec(line.trim());
    const b64 = m?.[2];
    if (m === null || b64 === undefined) {
      throw new TypeError(`Expected a public key line "[<hostId> ]ed25519:<44 base64 characters>" as \`twinlayer keygen\` prints it, got ${JSON.stringify(line.slice(0, 120))}`);
    }
    const raw = Buffer.from(b64, 'base64');
    // Base64 has several spellings of the same bytes (unused low bits); one key has one line.
    if (raw.length !== 32 || raw.toString('base64') !== b64) throw new TypeError(`Expected canonical base64 of 32 bytes after "ed25519:", got ${JSON.stringify(b64)}`);
    return new TrustedKey(raw, m[1] ?? null);
  }

  get line(): string {
    return formatPublicKeyLine(this.raw, this.host);
  }

  /** Constant work: one Ed25519 verification (the caller bounds the size of `data`). */
  verify(data: Buffer, signature: Buffer): boolean {
    return signature.length === 64 && verify(null, data, this.#key, signature);
  }
}

/** This host's private key. */
export class SigningKey {
  readonly keyId: string;
  /** The host it signs as (the config's hostId); null for a key not bound to a host (tests, tools). */
  readonly host: string | null;
  readonly publicRaw: Buffer;
  readonly #key: KeyObject;

  private constructor(key: KeyObject, host: string | null) {
    if (key.asymmetricKeyType !== 'ed25519') throw new SigningKeyError('SIGNING_KEY_INVALID', `expected an Ed25519 private key, got ${key.asymmetricKeyType ?? 'a key of unknown type'}`);
    this.#key = key;
    this.host = host;
    this.publicRaw = rawOf(createPublicKey(key));
    this.keyId = keyIdOf(this.publicRaw);
  }

  static generate(host: string | null): SigningKey {
    return new SigningKey(generateKeyPairSync('ed25519').privateKey, host);
  }

  /** From the 32-byte seed of RFC 8032 (fixed test vectors). */
  static fromSeed(seed: Buffer, host: string | null): SigningKey {
    if (seed.length !== 32) throw new TypeError(`Expected a 32-byte Ed25519 seed, got ${seed.length} bytes`);
    return new SigningKey(createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' }), host);
  }

  static fromPem(pem: string, host: string | null, path = '(inline)'): SigningKey {
    let key: KeyObject;
    try {
      key = createPrivateKey({ key: pem, format: 'pem' });
    } catch (err) {
      throw new SigningKeyError('SIGNING_KEY_INVALID', `not a PEM private key: ${(err as Error).message}`, { path, hint: 'make one with `twinlayer keygen`' });
    }
    if (key.asymmetricKeyType !== 'ed25519') throw new SigningKeyError('SIGNING_KEY_INVALID', `expected an Ed25519 private key, got ${key.asymmetricKeyType ?? 'unknown'}`, { path, hint: 'make one with `twinlayer keygen`' });
    return new SigningKey(key, host);
  }

  /** Its public half, as the group trusts it. */
  get trusted(): TrustedKey {
    return new TrustedKey(this.publicRaw, this.host);
  }

  get publicLine(): string {
    return formatPublicKeyLine(this.publicRaw, this.host);
  }

  sign(data: Buffer): Buffer {
    return sign(null, data, this.#key);
  }

  toPem(): string {
    return this.#key.export({ format: 'pem', type: 'pkcs8' }).toString();
  }
}

/**
 * Reads this host's private key. Like ssh, refuses a file that others may read (any group/other permission bit):
 * whoever reads it can sign for the group. SigningKeyError SIGNING_KEY_MISSING when the file does not exist.
 */
export async function readSigningKeyFile(path: string, host: string): Promise<SigningKey> {
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new SigningKeyError('SIGNING_KEY_MISSING', 'no signing key file', { path, hint: 'make one with `twinlayer keygen`' });
    throw new SigningKeyError('SIGNING_KEY_INVALID', `cannot read the signing key file: ${(err as Error).message}`, { path });
  }
  if (!st.isFile()) throw new SigningKeyError('SIGNING_KEY_INVALID', 'the signing key is not a regular file', { path });
  if ((st.mode & 0o077) !== 0) {
    throw new SigningKeyError('SIGNING_KEY_INVALID', `the signing key file may be read by others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')})`, { path, hint: `chmod 600 ${path}` });
  }
  if (st.size > MAX_KEY_FILE_BYTES) throw new SigningKeyError('SIGNING_KEY_INVALID', `the signing key file is ${st.size} bytes, not a PEM key`, { path });
  return SigningKey.fromPem(await readFile(path, 'utf8'), host, path);
}

/** Writes a new private key to `path` (mode 0600, parent made 0700 when absent); never replaces an existing file. */
export async function writeNewSigningKey(path: string, key: SigningKey): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  let fh;
  try {
    fh = await open(path, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new SigningKeyError('SIGNING_KEY_EXISTS', 'a file exists there; keygen never replaces a key', { path, hint: 'to rotate, write the new key to another file (--out) and follow "Rotating a key" in the README' });
    }
    throw err;
  }
  try {
    // Explicitly, whatever the umask made of the mode above.
    await fh.chmod(0o600);
    await fh.writeFile(key.toPem());
    await fh.sync();
  } finally {
    await fh.close();
  }
}
