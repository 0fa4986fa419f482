// The bucket layout (DESIGN.md "Bucket layout"): building keys, and parsing listed keys back, strictly.
// A listed key is untrusted: it is accepted only when it is exactly what we would have built.
import { containerNameRe, isDigest, MAX_GENERATION, MAX_SEQ, writerRe, type Digest, type Generation, type Seq } from './types.js';

const prefixRe = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;
const groupRe = /^[A-Za-z0-9._-]{1,64}$/;
const seqFileRe = /^([0-9]{16})\.json$/;
const generationRe = /^(0|[1-9][0-9]{0,15})$/;

export const SEQ_DIGITS = 16;

/** Where a divergent tail is saved: the host that held it, the generation it wrote, the container, the blob. */
export interface DivergentKeyParts {
  host: string;
  generation: Generation;
  container: string;
  digest: Digest;
}

function parseGeneration(text: string): Generation | null {
  if (!generationRe.test(text)) return null;
  const n = Number(text);
  return Number.isSafeInteger(n) && n <= MAX_GENERATION ? (n as Generation) : null;
}

/** A host id that is also a safe key segment ("." and ".." match the writer pattern but name directories). */
function isHostSegment(host: string): boolean {
  return writerRe.test(host) && host !== '.' && host !== '..';
}

/** The digest of a content-addressed key "<prefix><2 hex>/<64 hex>"; null for anything else. */
function parseAddressed(prefix: string, key: string): Digest | null {
  if (!key.startsWith(prefix)) return null;
  const rest = key.slice(prefix.length);
  const d = rest.slice(3);
  return rest.length === 67 && isDigest(d) && rest.slice(0, 3) === `${d.slice(0, 2)}/` ? d : null;
}

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

  /** Who owns generation g: created once, conditionally (If-None-Match: *), by the host that won it. */
  claimKey(g: Generation): string {
    return `${this.generationPrefix(g)}claim.json`;
  }

  /** Written by the owner of g when it leaves MASTER with no successor yet: another host may take over. */
  releaseKey(g: Generation): string {
    return `${this.generationPrefix(g)}released.json`;
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

  get blobsPrefix(): string {
    return `${this.base}/blobs/sha256/`;
  }

  /** The digest a blob key names; null unless the key is exactly blobKey(digest). */
  parseBlobKey(key: string): Digest | null {
    return parseAddressed(this.blobsPrefix, key);
  }

  /** A pack: chunks of large files (src/changeset/chunker.ts) stored back to back, each a gzip member of its own,
   *  named by the sha256 of the pack's bytes. Commit chunk lists say which chunk lies where (chunk-list.ts). */
  packKey(d: Digest): string {
    return `${this.packsPrefix}${d.slice(0, 2)}/${d}`;
  }

  get packsPrefix(): string {
    return `${this.base}/packs/sha256/`;
  }

  /** The digest a pack key names; null unless the key is exactly packKey(digest). */
  parsePackKey(key: string): Digest | null {
    return parseAddressed(this.packsPrefix, key);
  }

  /** An image object (issue 12, images through the bucket), content-addressed and shared by every container and
   *  generation of the group: an image's config under its config digest (the config's own bytes), and each layer
   *  under its diff id (the sha256 of the uncompressed layer tar), stored gzip'd. Naming layers by diff id rather
   *  than by their compressed digest makes both image stores agree: overlay2 and the containerd store report the
   *  same diff ids for one image, but save it with different compression. */
  imageKey(d: Digest): string {
    return `${this.imagesPrefix}${d.slice(0, 2)}/${d}`;
  }

  get imagesPrefix(): string {
    return `${this.base}/images/sha256/`;
  }

  /** The digest an image key names; null unless the key is exactly imageKey(digest). */
  parseImageKey(key: string): Digest | null {
    return parseAddressed(this.imagesPrefix, key);
  }

  /*
   * Divergent tails: what a demoted host held beyond the claim that superseded it (DESIGN.md "Roles, promotion,
   * fencing"). One small record per saved changeset,
   *   <base>/divergent/<host>/<generation>/<container>/<digest>.json
   * where <generation> is the generation the host wrote and <digest> the sha256 of the changeset, stored like
   * every changeset under blobs/ (content-addressed, verified on download). Naming the record by its blob keeps
   * every tail ever saved (a second demotion, a resumed save) and makes saving the same bytes again idempotent;
   * the record is zod-parsed and must agree with its key. Listing by host or host/generation is a prefix.
   */
  get divergentPrefix(): string {
    return `${this.base}/divergent/`;
  }

  /** The tails one host saved. */
  divergentHostPrefix(host: string): string {
    if (!isHostSegment(host)) throw new TypeError(`Expected a host id of 1-64 of A-Z a-z 0-9 . _ - (not "." or ".."), got ${JSON.stringify(host)}`);
    return `${this.divergentPrefix}${host}/`;
  }

  divergentKey(p: DivergentKeyParts): string {
    const hostPrefix = this.divergentHostPrefix(p.host);
    if (!containerNameRe.test(p.container)) throw new TypeError(`Expected a container name of [A-Za-z0-9][A-Za-z0-9_.-]{0,127}, got ${JSON.stringify(p.container)}`);
    if (!Number.isSafeInteger(p.generation) || p.generation < 0) throw new TypeError(`Expected a generation to be a non-negative safe integer, got ${String(p.generation)}`);
    if (!isDigest(p.digest)) throw new TypeError(`Expected a digest of 64 lowercase hex characters, got ${JSON.stringify(p.digest)}`);
    return `${hostPrefix}${p.generation}/${p.container}/${p.digest}.json`;
  }

  /** The parts of a divergent record's key; null unless the key is exactly what divergentKey builds. */
  parseDivergentKey(key: string): DivergentKeyParts | null {
    const prefix = this.divergentPrefix;
    if (!key.startsWith(prefix)) return null;
    const parts = key.slice(prefix.length).split('/');
    if (parts.length !== 4) return null;
    const [host, gText, container, file] = parts as [string, string, string, string];
    const generation = parseGeneration(gText);
    if (!isHostSegment(host) || generation === null || !containerNameRe.test(container) || !file.endsWith('.json')) return null;
    const digest = file.slice(0, -'.json'.length);
    if (!isDigest(digest)) return null;
    return { host, generation, container, digest };
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

  /** The generation of a key "gen/<g>/head.json", "gen/<g>/claim.json" or "gen/<g>/journal/<seq>.json"; else null. */
  parseGenerationKey(key: string): Generation | null {
    const prefix = this.generationsPrefix;
    if (!key.startsWith(prefix)) return null;
    const rest = key.slice(prefix.length);
    const slash = rest.indexOf('/');
    if (slash === -1) return null;
    const g = parseGeneration(rest.slice(0, slash));
    if (g === null) return null;
    if (key === this.headKey(g) || key === this.claimKey(g) || key === this.releaseKey(g) || this.parseJournalKey(g, key) !== null) return g;
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
