// Signing keys for the hosts a lab, a test or a bench starts: each host its own Ed25519 key (a 0600 file, as
// `twinlayer keygen` writes it) and every host trusting all of them, so everything runs signed by default.
import { join } from 'node:path';
import { Signatures, SigningKey, writeNewSigningKey, type TrustedKey } from '../store/index.js';

export class GroupKeys {
  readonly #keys: ReadonlyMap<string, { key: SigningKey; file: string }>;

  private constructor(keys: Map<string, { key: SigningKey; file: string }>) {
    this.#keys = keys;
  }

  /** A key per host id, written to `<dir>/<host>.key`. */
  static async create(dir: string, hosts: readonly string[]): Promise<GroupKeys> {
    const keys = new Map<string, { key: SigningKey; file: string }>();
    for (const host of hosts) {
      const key = SigningKey.generate(host);
      const file = join(dir, `${host}.key`);
      await writeNewSigningKey(file, key);
      keys.set(host, { key, file });
    }
    return new GroupKeys(keys);
  }

  #get(host: string): { key: SigningKey; file: string } {
    const k = this.#keys.get(host);
    if (k === undefined) throw new Error(`no signing key for host ${host} (hosts: ${[...this.#keys.keys()].join(', ')})`);
    return k;
  }

  keyFile(host: string): string {
    return this.#get(host).file;
  }

  key(host: string): SigningKey {
    return this.#get(host).key;
  }

  /** The trustedKeys lines of every host. */
  get lines(): string[] {
    return [...this.#keys.values()].map((k) => k.key.publicLine);
  }

  get trusted(): TrustedKey[] {
    return [...this.#keys.values()].map((k) => k.key.trusted);
  }

  /** TWINLAYER_* settings of `host`: its key file and the group's keys. */
  env(host: string): Record<string, string> {
    return { TWINLAYER_SIGNING_KEY_FILE: this.keyFile(host), TWINLAYER_TRUSTED_KEYS: this.lines.join(',') };
  }

  /** In process: signing as `host` (or not at all: an observer) and trusting the whole group. */
  signatures(host: string | null = null): Signatures {
    return new Signatures({ signer: host === null ? null : this.key(host), trusted: this.trusted, acceptUnsigned: false });
  }
}
