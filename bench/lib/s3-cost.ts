// What an S3 request seen at the fault proxy is (operation, price class, object), which of the primary's run on a clock
// rather than with the workload, and what a month of it costs at AWS S3 list prices. Pure: bench/months.ts feeds it.

/** AWS S3 Standard list prices, us-east-1, first 50 TB a month (per GB-month of storage; per 1000 requests). */
export const S3_PRICES = {
  region: 'us-east-1',
  storageClass: 'S3 Standard',
  /** When these prices were taken: quoted in the bench's brief on that day (aws.amazon.com/s3/pricing), not fetched
   *  (this machine has no network). */
  asOf: '2026-12-07',
  storagePerGbMonth: 0.023,
  /** PUT, COPY, POST, LIST. */
  tier1Per1000: 0.005,
  /** GET, HEAD (and every other request but DELETE). */
  tier2Per1000: 0.0004,
  /** DELETE (and DeleteObjects, a multi-object delete, billed as DELETE) and CANCEL: free. */
  deletePer1000: 0,
  /** AWS bills storage per GB-month with GB = 2^30 bytes, and a month as 730 hours. */
  bytesPerGb: 2 ** 30,
  hoursPerMonth: 730,
} as const;

export type RequestKind = 'PUT' | 'COPY' | 'POST' | 'LIST' | 'GET' | 'HEAD' | 'DELETE';
export const requestKinds: readonly RequestKind[] = ['PUT', 'COPY', 'POST', 'LIST', 'GET', 'HEAD', 'DELETE'];

/** What part of the bucket layout (src/store/keys.ts) a request touches; a listing by the prefix it lists
 *  (`generation`: the generations, or one generation's keys). */
export type ObjectClass = 'head' | 'claim' | 'released' | 'record' | 'generation' | 'blob' | 'pack' | 'spec' | 'divergent' | 'group' | 'other';

/** The class of a key under `<prefix>/<group>/` (or of a listed prefix). */
export function objectClassOf(key: string): ObjectClass {
  if (/\/gen\/\d+\/head\.json$/.test(key)) return 'head';
  if (/\/gen\/\d+\/claim\.json$/.test(key)) return 'claim';
  if (/\/gen\/\d+\/released\.json$/.test(key)) return 'released';
  if (/\/gen\/\d+\/journal\//.test(key)) return 'record';
  if (/\/gen\/(\d+\/)?$/.test(key)) return 'generation';
  if (/\/blobs\//.test(key)) return 'blob';
  if (/\/packs\//.test(key)) return 'pack';
  if (/\/containers\//.test(key)) return 'spec';
  if (/\/divergent\//.test(key)) return 'divergent';
  return /^[^/]+\/[^/]+\/?$/.test(key) || key === '' ? 'group' : 'other';
}

export interface ClassifiedRequest {
  kind: RequestKind;
  object: ObjectClass;
}

/**
 * A request as the proxy saw it (path style: `/<bucket>/<key>?<query>`). The AWS SDK names most operations in
 * `x-id`; a listing carries `list-type`, a multi-object delete `delete`, a multipart upload `uploads` or `uploadId`.
 */
export function classifyRequest(method: string, url: string): ClassifiedRequest {
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const query = new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
  const slash = path.indexOf('/', 1);
  const key = slash < 0 ? '' : decodeURIComponent(path.slice(slash + 1));
  const m = method.toUpperCase();
  if (m === 'GET' && (query.has('list-type') || (key === '' && query.has('prefix')))) {
    return { kind: 'LIST', object: objectClassOf(query.get('prefix') ?? '') };
  }
  const object = objectClassOf(key);
  if (m === 'DELETE') return { kind: 'DELETE', object };
  if (m === 'POST') return { kind: query.has('delete') ? 'DELETE' : 'POST', object };
  if (m === 'PUT') return { kind: query.get('x-id') === 'CopyObject' ? 'COPY' : 'PUT', object };
  if (m === 'HEAD') return { kind: 'HEAD', object };
  return { kind: 'GET', object };
}

/**
 * Whether a request of the primary is its fence's (a probe of the next generation's claim and head, both missing,
 * every fenceIntervalMs): on its own clock, whatever the workload. Everything else the primary sends follows the
 * workload (commits, checkpoints) or GC, both compressed in the months bench. `status` is the server's answer.
 */
export function isFenceProbe(r: ClassifiedRequest, status: number): boolean {
  return (r.kind === 'GET' || r.kind === 'HEAD') && (r.object === 'head' || r.object === 'claim' || r.object === 'released') && status === 404;
}

/**
 * Whether a request of the standby is one of its clocks' (its head polls, generation probes and spec listings, every
 * pollIntervalMs or every 20 polls): what it asks when nothing is written. Records, blobs and specs it reads follow
 * commits (an idle primary still publishes a checkpoint after its last write).
 */
export function isStandbyClock(r: ClassifiedRequest): boolean {
  if (r.kind === 'GET' || r.kind === 'HEAD') return r.object === 'head' || r.object === 'claim' || r.object === 'released';
  return r.kind === 'LIST' && (r.object === 'spec' || r.object === 'generation');
}

export function pricePer1000(kind: RequestKind): number {
  if (kind === 'DELETE') return S3_PRICES.deletePer1000;
  if (kind === 'PUT' || kind === 'COPY' || kind === 'POST' || kind === 'LIST') return S3_PRICES.tier1Per1000;
  return S3_PRICES.tier2Per1000;
}

/** Dollars a month for `perHour` requests of each kind, sustained. */
export function monthlyRequestCost(perHour: Partial<Record<RequestKind, number>>): number {
  let dollars = 0;
  for (const kind of requestKinds) dollars += ((perHour[kind] ?? 0) * S3_PRICES.hoursPerMonth / 1000) * pricePer1000(kind);
  return dollars;
}

/** Dollars a month for keeping `bytes` stored. */
export function monthlyStorageCost(bytes: number): number {
  return (bytes / S3_PRICES.bytesPerGb) * S3_PRICES.storagePerGbMonth;
}
