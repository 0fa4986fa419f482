// The bytes a signature covers. A signed object in the bucket is its JSON body plus a `signature` field; the
// signature is over a short header that says where the object lives and who signed it, then the body in canonical
// JSON (the object minus `signature`). The reader recomputes these bytes from what it read and from the key it read
// it at, so a signed object copied to another key, kind or group no longer verifies.
//
// Canonical JSON (RFC 8785 for the values JSON.parse yields): no whitespace; object members sorted by their names'
// UTF-16 code units; strings as JSON.stringify writes them; numbers as ECMAScript writes them (JSON.stringify);
// arrays in order. Nesting deeper than MAX_CANONICAL_DEPTH is refused, so the work is linear in the (size-bounded)
// body and cannot exhaust the stack.

/** The signed objects of the bucket layout (keys.ts), by what they are. */
export const SIGNED_KINDS = ['record', 'head', 'spec', 'claim', 'release', 'divergent'] as const;
export type SignedKind = (typeof SIGNED_KINDS)[number];

/** The objects twinlayer writes nest 4 levels at most (a spec's port bindings); 32 leaves room and bounds the work. */
export const MAX_CANONICAL_DEPTH = 32;

/** First line of the signed bytes: names the format, so bytes signed for anything else never verify here. */
export const SIGNED_HEADER = 'twinlayer signed object v1';

/** Where a signed object lives: its group, its kind and its key relative to `<prefix>/<group>/`. */
export interface SignedContext {
  group: string;
  kind: SignedKind;
  /** The object's key below `<prefix>/<group>/`, e.g. `gen/3/journal/0000000000000005.json`. */
  key: string;
  /** The signer's key id (signing-keys.ts keyIdOf). */
  keyId: string;
}

export class CanonicalFormError extends Error {}

/** `value` (as JSON.parse yields it) in canonical JSON; CanonicalFormError for anything JSON cannot hold. */
export function canonicalJson(value: unknown, depth = 0): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'string':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new CanonicalFormError(`a number that JSON cannot hold: ${String(value)}`);
      return JSON.stringify(value);
    case 'object':
      break;
    default:
      throw new CanonicalFormError(`a ${typeof value} is not JSON`);
  }
  if (depth >= MAX_CANONICAL_DEPTH) throw new CanonicalFormError(`nested deeper than ${MAX_CANONICAL_DEPTH} levels`);
  if (Array.isArray(value)) return `[${value.map((v: unknown) => canonicalJson(v, depth + 1)).join(',')}]`;
  const obj = value as Record<string, unknown>;
  // Default sort compares UTF-16 code units, as RFC 8785 asks.
  const names = Object.keys(obj).sort();
  return `{${names.map((n) => `${JSON.stringify(n)}:${canonicalJson(obj[n], depth + 1)}`).join(',')}}`;
}

const lineSafe = /^[\x21-\x7e]+$/;

/** The bytes signed for `body` (an object without its `signature` field) at `ctx`. */
export function signedBytes(ctx: SignedContext, body: Record<string, unknown>): Buffer {
  for (const [name, v] of [['group', ctx.group], ['key', ctx.key], ['keyId', ctx.keyId]] as const) {
    // Validated long before (keys.ts, the signature schema); checked again because a newline here would let one
    // header pass for another.
    if (!lineSafe.test(v)) throw new CanonicalFormError(`${name} is not printable ASCII without spaces: ${JSON.stringify(v)}`);
  }
  const header = `${SIGNED_HEADER}\ngroup ${ctx.group}\nkind ${ctx.kind}\nkey ${ctx.key}\nsigner ${ctx.keyId}\n\n`;
  return Buffer.from(header + canonicalJson(body), 'utf8');
}
