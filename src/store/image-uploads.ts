// Image objects in the bucket (issue 12, images through the bucket; the layout is KeyLayout.imageKey): what the
// primary's shipper asks of them (the standby's checked reads are image-objects.ts). Content-addressed like blobs,
// so a PUT over the same key writes the same bytes.
import type { Bucket } from './bucket.js';
import type { Digest } from './types.js';

export class ImageUploads {
  readonly #bucket: Bucket;

  constructor(bucket: Bucket) {
    this.#bucket = bucket;
  }

  key(d: Digest): string {
    return this.#bucket.layout.imageKey(d);
  }

  /** Whether the object is in the bucket (a HEAD) and stays: one a GC run of this process is about to delete counts
   *  as missing, and is rescued from that run (delete-gate.ts) for the put that follows. */
  async has(d: Digest, signal?: AbortSignal): Promise<boolean> {
    const key = this.key(d);
    if (await this.#bucket.gate.beforeWrite(key)) return false;
    return this.#bucket.store.exists(key, { signal });
  }

  /** Uploads the object; `signal` ends the upload in flight. A GC run of this process that doomed the key leaves it. */
  async put(d: Digest, body: Buffer | { file: string }, signal?: AbortSignal): Promise<void> {
    const key = this.key(d);
    await this.#bucket.gate.beforeWrite(key);
    await this.#bucket.store.put(key, body, { signal });
  }
}
