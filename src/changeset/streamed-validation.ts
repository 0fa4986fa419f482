// Standby side: validation in the same pass as the download. The bytes of a blob on its way (Bucket.downloadBlob's
// tap) go through the same gunzip, tar parse and checks as validate.ts, so the file on disk is read once more only,
// by the apply. The download's digest still decides: a plan or a refusal counts only once every byte was seen and
// the blob matched its digest (a request retried or a blob that does not match voids what its bytes gave), and
// nothing is written into the twin before that.
//
// The download and validation go at the pace of the slower, with at most `bufferBytes` between them. Validation
// that takes nothing for `stallMs` (a disk slow to answer its lstats, a loaded thread pool) is left behind: the
// download goes on at its own pace and the caller validates the file afterwards, as without streaming. A refusal
// mid-stream stops validating, not the download: whether the blob is hostile or only damaged on the way is known
// from its digest, at the end (a damaged one is fetched again, a hostile one refused for good).
import { PassThrough } from 'node:stream';
import type { Logger } from '../log/logger.js';
import type { ChangesetKind } from './built-changeset.js';
import type { ChunkList } from './chunk-list.js';
import type { DeclaredChangeset } from './declared.js';
import { ChangesetNoRoomError, ChangesetRejectedError } from './errors.js';
import type { Limits } from './limits.js';
import { checkTarget, type StageTarget } from './stage-target.js';
import type { TreeRoots } from './tree-roots.js';
import { validateChangesetStream, type StagePlan } from './validate.js';

export interface StreamedValidationOptions {
  kind: ChangesetKind;
  target: StageTarget;
  /** The blob's size as its record declares it (the download stops past it): bounds the expansion. */
  size: number;
  limits: Limits;
  declared?: DeclaredChangeset;
  chunks?: ChunkList;
  signal?: AbortSignal;
  log?: Logger;
  /** How long the download waits for validation to take more bytes before leaving it behind. Default 1000 ms. */
  stallMs?: number;
  /** Bytes held between the download and validation (besides gunzip's chunk). Default 4 MiB. */
  bufferBytes?: number;
}

/** A changeset validated from its bytes as they were downloaded, for the target it was validated against. */
export interface ValidatedChangeset {
  readonly plan: StagePlan;
  /** kind, upper dir and volumes validated against (stageChangeset refuses the plan for another target). */
  readonly against: string;
}

/** What a plan was validated against: the same kind, upper dir and volume dirs, or it does not apply. */
export function validatedAgainst(kind: ChangesetKind, upper: string, roots: TreeRoots): string {
  return JSON.stringify([kind, upper, [...roots.volumes].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))]);
}

/** One request's bytes (Bucket's BlobTap). */
export interface ValidationFeed {
  write(bytes: Buffer): Promise<void> | undefined;
  end(): void;
  abort(reason: Error): void;
  /** Resolves once validation of these bytes ended, whatever its outcome (a refusal mid-stream ends it early). */
  readonly settled: Promise<void>;
}

const gatherBytes = 1024 * 1024;

type Outcome = { status: 'valid'; validated: ValidatedChangeset } | { status: 'refused'; err: Error } | { status: 'void'; why: string };

class Feed implements ValidationFeed {
  readonly #o: StreamedValidationOptions;
  readonly #input: PassThrough;
  readonly done: Promise<Outcome>;
  readonly settled: Promise<void>;
  /** Why this feed's work is void (left behind, aborted, a request retried), or null. */
  #void: string | null = null;
  ended = false;
  /** Bytes written since the last piece went to validation. */
  #gathered: Buffer[] = [];
  #gatheredBytes = 0;

  constructor(o: StreamedValidationOptions) {
    this.#o = o;
    // Half on each side of the PassThrough: its writable and readable buffers fill alike.
    this.#input = new PassThrough({ highWaterMark: (o.bufferBytes ?? 4 * 1024 * 1024) / 2 });
    // Errors reach validation through its own listener (readChangesetFrom); this one keeps a late write quiet.
    this.#input.on('error', () => undefined);
    this.done = this.#validate().then(
      (validated): Outcome => (this.#void === null ? { status: 'valid', validated } : { status: 'void', why: this.#void }),
      (err: unknown): Outcome => {
        if (this.#void !== null) return { status: 'void', why: this.#void };
        if (err instanceof ChangesetRejectedError || err instanceof ChangesetNoRoomError) return { status: 'refused', err };
        // Anything else (the target, an I/O error) is met again, and reported, by validating the file.
        return { status: 'void', why: `streamed validation failed: ${(err as Error).message}` };
      },
    );
    this.settled = this.done.then(() => undefined);
  }

  async #validate(): Promise<ValidatedChangeset> {
    const o = this.#o;
    let target: Awaited<ReturnType<typeof checkTarget>>;
    try {
      target = await checkTarget(o.target);
    } catch (err) {
      this.#input.destroy();
      throw err;
    }
    const plan = await validateChangesetStream(this.#input, o.size, {
      kind: o.kind, roots: target.roots, tmpDir: target.tmp, limits: o.limits,
      ...(o.declared === undefined ? {} : { declared: o.declared }),
      ...(o.signal === undefined ? {} : { signal: o.signal }),
      ...(o.chunks === undefined ? {} : { chunks: o.chunks }),
    });
    return { plan, against: validatedAgainst(o.kind, target.upper, target.roots) };
  }

  write(bytes: Buffer): Promise<void> | undefined {
    // Validation ended (a refusal mid-stream) or was stopped: the download goes on without it.
    if (this.#void !== null || this.#input.destroyed) return undefined;
    // A socket's reads are 16-64 KiB: gathered into pieces of about `gatherBytes`, as a file is read, since each
    // write into gunzip is a round trip to the thread pool (and on a loaded machine a slow one).
    this.#gathered.push(bytes);
    this.#gatheredBytes += bytes.length;
    if (this.#gatheredBytes < gatherBytes) return undefined;
    if (this.#input.write(this.#take())) return undefined;
    return this.#room();
  }

  #take(): Buffer {
    const piece = Buffer.concat(this.#gathered, this.#gatheredBytes);
    this.#gathered = [];
    this.#gatheredBytes = 0;
    return piece;
  }

  /** Waits until validation took what is buffered, or ended; left behind when it takes nothing for stallMs. */
  async #room(): Promise<void> {
    const stallMs = this.#o.stallMs ?? 1000;
    const stalled = await new Promise<boolean>((resolve) => {
      const done = (stall: boolean) => (): void => {
        clearTimeout(timer);
        this.#input.off('drain', onRoom);
        this.#input.off('close', onRoom);
        resolve(stall);
      };
      const onRoom = done(false);
      const timer = setTimeout(done(true), stallMs);
      this.#input.on('drain', onRoom);
      this.#input.on('close', onRoom);
    });
    if (!stalled) return;
    this.#o.log?.debug('streamed validation fell behind the download; the downloaded file is validated instead', { stallMs });
    this.abort(new Error(`validation took no bytes for ${stallMs} ms; left behind`));
  }

  end(): void {
    if (this.#void !== null || this.ended) return;
    this.ended = true;
    if (this.#gatheredBytes > 0 && !this.#input.destroyed) this.#input.write(this.#take());
    this.#input.end();
  }

  abort(reason: Error): void {
    if (this.#void !== null) return;
    this.#void = reason.message;
    this.#gathered = [];
    this.#gatheredBytes = 0;
    // With an error: validation must stop, not wait for an end that never comes.
    this.#input.destroy(reason);
  }
}

/** Validation of a blob as its download streams it (one Feed per request of the download). */
export class StreamedValidation {
  readonly #o: StreamedValidationOptions;
  #feed: Feed | null = null;
  readonly #onAbort = (): void => this.#feed?.abort(new Error('aborted'));

  constructor(o: StreamedValidationOptions) {
    this.#o = o;
    o.signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  /** A feed for the next request of the blob: what an earlier one was shown is void. */
  feed(): ValidationFeed {
    this.#feed?.abort(new Error('the download started again'));
    const f = new Feed(this.#o);
    if (this.#o.signal?.aborted === true) f.abort(new Error('aborted'));
    this.#feed = f;
    return f;
  }

  /**
   * Once the download returned: the plan validated from its bytes, or null when there is none to trust (validation
   * was left behind or failed otherwise, or the download showed no bytes): the caller then validates the file.
   * Throws the refusal (ChangesetRejectedError, ChangesetNoRoomError) of a blob that matched its digest.
   */
  async result(): Promise<ValidatedChangeset | null> {
    const f = this.#feed;
    if (f === null || !f.ended) return null;
    const out = await f.done;
    if (out.status === 'refused') throw out.err;
    if (out.status === 'void') {
      this.#o.log?.debug('validating the downloaded file', { why: out.why });
      return null;
    }
    return out.validated;
  }

  /** Stops whatever is still going (the download failed or was abandoned). */
  close(): void {
    this.#o.signal?.removeEventListener('abort', this.#onAbort);
    this.#feed?.abort(new Error('closed'));
  }
}
