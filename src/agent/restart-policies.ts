// Twins run with restart policy `no`; promoted, they get their primary's back, from the spec. A container whose
// spec cannot be read now stays pending, and pushing waits for it: the pusher captures the spec, policy included,
// from the running container, and a `no` captured there would replace the user's policy for every later failover.
import { NO_RESTART, twinSpecSchema, type DockerRuntime, type TwinSpec } from '../docker/index.js';
import type { Logger } from '../log/logger.js';
import type { Bucket } from '../store/index.js';
import { messageOf as message, within } from './bounded.js';


export class RestartPolicies {
  readonly #runtime: DockerRuntime;
  readonly #bucket: Bucket;
  readonly #log: Logger;
  readonly #askMs: number;
  readonly #pending = new Set<string>();

  constructor(opts: { runtime: DockerRuntime; bucket: Bucket; log: Logger; askMs: number }) {
    this.#runtime = opts.runtime;
    this.#bucket = opts.bucket;
    this.#log = opts.log;
    this.#askMs = opts.askMs;
  }

  get pending(): string[] {
    return [...this.#pending].sort();
  }

  clear(): void {
    this.#pending.clear();
  }

  /** Restores each container's policy from `specs` or the bucket; returns the per-container failures. */
  async restore(names: readonly string[], specs: ReadonlyMap<string, TwinSpec>): Promise<{ name: string; error: string }[]> {
    const errors: { name: string; error: string }[] = [];
    for (const name of names) {
      const spec = specs.get(name) ?? (await this.#specFromBucket(name));
      if (spec === 'unknown') {
        this.#pending.add(name);
        continue;
      }
      this.#pending.delete(name);
      // No spec in the bucket (a container nobody replicated yet): it keeps the policy it runs with.
      if (spec === null) continue;
      try {
        await this.#runtime.setRestartPolicy(name, spec.restartPolicy ?? NO_RESTART);
      } catch (err) {
        this.#pending.add(name);
        errors.push({ name, error: message(err) });
      }
    }
    return errors;
  }

  /** Retries the pending ones; true when none is left. */
  async retryPending(): Promise<boolean> {
    if (this.#pending.size > 0) await this.restore([...this.#pending], new Map());
    return this.#pending.size === 0;
  }

  async #specFromBucket(name: string): Promise<TwinSpec | null | 'unknown'> {
    let raw: unknown;
    try {
      const r = await within(this.#bucket.getSpec(name), this.#askMs);
      if (!r.done) return 'unknown';
      raw = r.value;
    } catch {
      return 'unknown';
    }
    if (raw === undefined) return null;
    const parsed = twinSpecSchema.safeParse(raw);
    if (!parsed.success) {
      this.#log.warn('spec in the bucket does not parse; the container keeps its restart policy', { container: name, reason: parsed.error.issues[0]?.message });
      return null;
    }
    if (parsed.data.name !== name) {
      this.#log.warn('spec in the bucket names another container; the container keeps its restart policy', { container: name, named: parsed.data.name });
      return null;
    }
    return parsed.data;
  }
}
