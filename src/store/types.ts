// Branded domain numbers and the content address. Brands keep a seq from being passed where a generation goes.
import { TwinlayerError } from '../log/errors.js';

export type Seq = number & { readonly __brand: 'Seq' };
export type Generation = number & { readonly __brand: 'Generation' };
/** sha256 of a blob's stored bytes: 64 lowercase hex characters. */
export type Digest = string & { readonly __brand: 'Digest' };

/** Seq and generation numbers stay exact in a JS number; a 16-digit journal key can hold them all. */
export const MAX_SEQ = Number.MAX_SAFE_INTEGER;
export const MAX_GENERATION = Number.MAX_SAFE_INTEGER;

const digestRe = /^[0-9a-f]{64}$/;

export function isDigest(s: string): s is Digest {
  return digestRe.test(s);
}

export function asDigest(s: string): Digest {
  if (!isDigest(s)) throw new TwinlayerError('DIGEST_INVALID', `Expected a digest of 64 lowercase hex characters, got ${JSON.stringify(s.slice(0, 80))}`);
  return s;
}

/** `n` as a Seq; 0 means "none" (a parentSeq with no parent, the seq of an empty generation). */
export function asSeq(n: number): Seq {
  if (!Number.isSafeInteger(n) || n < 0) throw new TwinlayerError('SEQ_INVALID', `Expected a seq to be a non-negative safe integer, got ${String(n)}`);
  return n as Seq;
}

export function asGeneration(n: number): Generation {
  if (!Number.isSafeInteger(n) || n < 0) throw new TwinlayerError('GENERATION_INVALID', `Expected a generation to be a non-negative safe integer, got ${String(n)}`);
  return n as Generation;
}

/** Container names as Docker allows them (and as they appear in keys). */
export const containerNameRe = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
/** Writer host ids, as the config's hostId. */
export const writerRe = /^[A-Za-z0-9._-]{1,64}$/;

/** Head pointers and commit records are small; nothing larger is read into memory. */
export const MAX_RECORD_BYTES = 1024 * 1024;
/** A twin spec (docker inspect, trimmed) is larger than a record but still small. */
export const MAX_SPEC_BYTES = 4 * 1024 * 1024;
