// Which signatures a host accepts and how it signs what it writes. Every head, commit record, spec, claim, release
// and divergent record carries `signature: {keyId, ed25519}` over signedBytes (canonical.ts): the group, the
// object's kind and key, the signer's key id and the rest of the object in canonical JSON. A reader accepts an
// object only when that signature verifies under a key the group trusts; `acceptUnsigned` (migration only) also
// accepts objects without one.
import { z } from 'zod';

import { CanonicalFormError, signedBytes, type SignedKind } from './canonical.js';
import { keyIdRe, type SigningKey, type TrustedKey } from './signing-keys.js';

/** The signature field: a key id and 64 bytes of Ed25519 signature in base64 (88 characters). */
export const signatureSchema = z.strictObject({
  keyId: z.string().regex(keyIdRe, 'expected 16 lowercase hex characters'),
  ed25519: z.string().regex(/^[A-Za-z0-9+/]{86}==$/, 'expected 64 bytes in base64'),
});
export type SignatureField = z.infer<typeof signatureSchema>;

/** The field signed objects carry their signature in. */
export const SIGNATURE_FIELD = 'signature';

export interface SignaturesOptions {
  /** Signs what this host writes; null: this host writes nothing signed (a reader, or acceptUnsigned). */
  signer: SigningKey | null;
  /** The group's public keys. */
  trusted: readonly TrustedKey[];
  /** Accept objects without a signature (and signatures by keys outside `trusted`), and write unsigned without a
   *  signer. For moving a group to signed commits; never the default. */
  acceptUnsigned: boolean;
}

/** Where an object lives, for signing and checking. */
export interface ObjectPlace {
  group: string;
  kind: SignedKind;
  /** The key below `<prefix>/<group>/`. */
  key: string;
}

export type Opened =
  | { ok: true; body: Record<string, unknown>; signer: TrustedKey | null }
  | { ok: false; reason: string };

/** What status shows of the signature set-up. */
export interface SignaturePolicyView {
  /** True unless acceptUnsigned. */
  required: boolean;
  signer: { keyId: string; host: string | null } | null;
  trusted: Array<{ keyId: string; host: string | null }>;
}

export class Signatures {
  readonly #signer: SigningKey | null;
  readonly #trusted: ReadonlyMap<string, TrustedKey>;
  readonly #acceptUnsigned: boolean;

  constructor(opts: SignaturesOptions) {
    const trusted = new Map<string, TrustedKey>();
    for (const k of opts.trusted) {
      const seen = trusted.get(k.keyId);
      if (seen !== undefined) throw new TypeError(`Expected each trusted key once, got key ${k.keyId} twice (${seen.line} and ${k.line})`);
      trusted.set(k.keyId, k);
    }
    this.#signer = opts.signer;
    this.#trusted = trusted;
    this.#acceptUnsigned = opts.acceptUnsigned;
  }

  get required(): boolean {
    return !this.#acceptUnsigned;
  }

  get signer(): SigningKey | null {
    return this.#signer;
  }

  /** The trusted key with this id, if any. */
  trustedKey(keyId: string): TrustedKey | undefined {
    return this.#trusted.get(keyId);
  }

  view(): SignaturePolicyView {
    return {
      required: this.required,
      signer: this.#signer === null ? null : { keyId: this.#signer.keyId, host: this.#signer.host },
      trusted: [...this.#trusted.values()].map((k) => ({ keyId: k.keyId, host: k.host })),
    };
  }

  /**
   * `body` as it is written at `place`: with a signature by this host's key, or unchanged without a signer when
   * unsigned objects are accepted. Throws without a signer otherwise (the start-up checks catch that first).
   */
  seal(place: ObjectPlace, body: object): Record<string, unknown> {
    // What the reader will canonicalize is the JSON text's value: round-trip so both sides sign the same thing
    // (undefined members dropped, numbers as JSON writes them).
    const plain = JSON.parse(JSON.stringify(body)) as unknown;
    if (plain === null || typeof plain !== 'object' || Array.isArray(plain)) throw new TypeError(`Expected a JSON object to sign at ${place.key}`);
    const value = plain as Record<string, unknown>;
    if (SIGNATURE_FIELD in value) throw new TypeError(`Expected an object without a \`${SIGNATURE_FIELD}\` member at ${place.key}`);
    if (this.#signer === null) {
      if (this.#acceptUnsigned) return value;
      throw new TypeError(`no signing key: cannot write ${place.kind} ${place.key} (set signingKeyFile, or acceptUnsigned to write unsigned)`);
    }
    const keyId = this.#signer.keyId;
    const sig = this.#signer.sign(signedBytes({ ...place, keyId }, value));
    return { ...value, [SIGNATURE_FIELD]: { keyId, ed25519: sig.toString('base64') } };
  }

  /**
   * Checks an object read at `place` (`json` as JSON.parse returned it): its body without the signature field, and
   * the trusted key that signed it (null: accepted unsigned), or why it is refused. Constant work apart from the
   * canonical form, which is linear in the size-bounded body: one schema check, one lookup, one verification.
   */
  open(place: ObjectPlace, json: unknown): Opened {
    if (json === null || typeof json !== 'object' || Array.isArray(json)) return { ok: false, reason: 'not a JSON object' };
    const { [SIGNATURE_FIELD]: field, ...body } = json as Record<string, unknown>;
    if (field === undefined) {
      return this.#acceptUnsigned ? { ok: true, body, signer: null } : { ok: false, reason: 'not signed (no signature field); unsigned objects are refused' };
    }
    const parsed = signatureSchema.safeParse(field);
    if (!parsed.success) return { ok: false, reason: `signature field is malformed: ${parsed.error.issues[0]?.message ?? 'invalid'}` };
    const key = this.#trusted.get(parsed.data.keyId);
    if (key === undefined) {
      // Under acceptUnsigned a signature by a key not (yet) listed counts as no signature: a group moving to
      // signed commits lists its keys last.
      if (this.#acceptUnsigned) return { ok: true, body, signer: null };
      return { ok: false, reason: `signed by key ${parsed.data.keyId}, which is not among the group's trusted keys` };
    }
    let bytes: Buffer;
    try {
      bytes = signedBytes({ ...place, keyId: key.keyId }, body);
    } catch (err) {
      if (err instanceof CanonicalFormError) return { ok: false, reason: `cannot be put in canonical form: ${err.message}` };
      throw err;
    }
    if (!key.verify(bytes, Buffer.from(parsed.data.ed25519, 'base64'))) {
      return { ok: false, reason: `signature by key ${key.keyId}${key.host === null ? '' : ` (${key.host})`} does not verify for this content at this key in group ${place.group}` };
    }
    return { ok: true, body, signer: key };
  }

  /** Why `signer` may not sign an object written as `host`, or null: a key listed with a host signs only for it. */
  static hostProblem(signer: TrustedKey | null, host: string | null): string | null {
    if (signer === null || signer.host === null || host === null || signer.host === host) return null;
    return `written as host ${host} but signed by the key of host ${signer.host} (${signer.keyId})`;
  }
}
