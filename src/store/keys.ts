// The bucket layout (DESIGN.md "Bucket layout"): building keys, and parsing listed keys back, strictly.
// A listed key is untrusted: it is accepted only when it is exactly what we would have built.
import { containerNameRe, MAX_GENERATION, MAX_SEQ, type Digest, type Generation, type Seq } from './types.js';

const prefixRe = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;
const groupRe = /^[A-Za-z0-9._-]{1,64}$/;
const seqFileRe = /^([0-9]{16})\.json$/;
const generationRe = /^(0|[1-9][0-9]{0,15})$/;

export const SEQ_DIGITS = 16;

export function formatSeq(seq: Seq): string {
  return String(seq).padStart(SEQ_DIGITS, '0');
}

export class KeyLayout {
  /** "<prefix>/<group>" (just "<group>" with an empty prefix). */
  readonly base: string;

  constructor(prefix: string, group: string) {
    if (prefix !== '' && (!prefixRe.test(prefix) || prefix.split('/').some((s) => s === '.' || s === '..'))) {
      throw new TypeError(`Expected \`prefix\` to be slash-separated words of A-Z a-z 0-9 . _ -, got ${JSON.stringify(prefix)}`);
    }
    if (!groupRe.test(group) || group === '.' || group === '..') throw new TypeError(`Expected \`group\` to be 1-64 of A-Z a-z 0-9 . _ -, got ${JSON.stringify(group)}`);
    this.base = prefix === '' ? group : `${prefix}/${group}`;
  }

  get generationsPrefix(): string {
    return `${this.base}/gen/`;
  }

  generationPrefix(g: Generation): string {
    return `${this.base}/gen/${g}/`;
  }

  headKey(g: Generation): string {
    return `${this.generationPrefix(g)}head.json`;
  }

  journalPrefix(g: Generation): string {
    return `${this.generationPrefix(g)}journal/`;
  }

  journalKey(g: Generation, s: Seq): string {
    return `${this.journalPrefix(g)}${formatSeq(s)}.json`;
  }

  get specsPrefix(): string {
    return `${this.base}/containers/`;
  }

  specKey(name: string): string {
    if (!containerNameRe.test(name)) throw new TypeError(`Expected a container name of [A-Za-z0-9][A-Za-z0-9_.-]{0,127}, got ${JSON.stringify(name)}`);
    return `${this.specsPrefix}${name}/spec.json`;
  }

  blobKey(d: Digest): string {
    return `${this.base}/blobs/sha256/${d.slice(0, 2)}/${d}`;
  }

  /** The seq a journal key names, or null unless the key is exactly journalKey(g, seq) for a seq >= 1. */
  parseJournalKey(g: Generation, key: string): Seq | null {
    const prefix = this.journalPrefix(g);
    if (!key.startsWith(prefix)) return null;
    const m = seqFileRe.exec(key.slice(prefix.length));
    if (m === null) return null;
    const n = Number(m[1]);
    return Number.isSafeInteger(n) && n >= 1 && n <= MAX_SEQ ? (n as Seq) : null;
  }

  /** The generation of a key "gen/<g>/head.json" or "gen/<g>/journal/<seq>.json"; null for anything else. */
  parseGenerationKey(key: string): Generation | null {
    const prefix = this.generationsPrefix;
    if (!key.startsWith(prefix)) return null;
    const rest = key.slice(prefix.length);
    const slash = rest.indexOf('/');
    if (slash === -1) return null;
    const gText = rest.slice(0, slash);
    if (!generationRe.test(gText)) return null;
    const n = Number(gText);
    if (!Number.isSafeInteger(n) || n > MAX_GENERATION) return null;
    const g = n as Generation;
    if (key === this.headKey(g) || this.parseJournalKey(g, key) !== null) return g;
    return null;
  }

  /** The container name of a key "containers/<name>/spec.json"; null for anything else. */
  parseSpecKey(key: string): string | null {
    const prefix = this.specsPrefix;
    if (!key.startsWith(prefix) || !key.endsWith('/spec.json')) return null;
    const name = key.slice(prefix.length, -'/spec.json'.length);
    return containerNameRe.test(name) ? name : null;
  }
}
