// An image's identity across Docker's two image stores (issue 11). Under overlay2 an image id is its config digest;
// under the containerd store it is the digest of a manifest or index, and `docker save | docker load` between the two
// gives other ids for one image. What survives is the config digest and the layers' diff ids: specs carry them, and a
// twin's image is matched by them.
import { createHash } from 'node:crypto';
import { z } from 'zod';

const digest = z.string().regex(/^sha256:[0-9a-f]{64}$/, 'sha256:<64 hex>');

export interface ImageIdentity {
  /** The digest of the image's config (its id under overlay2). */
  configDigest: string;
  /** The diff ids of its layers, bottom first (`docker image inspect` RootFS.Layers). */
  diffIds: string[];
}

export const imageIdentitySchema = z.strictObject({
  configDigest: digest,
  diffIds: z.array(digest).max(1024),
});

export function sameIdentity(a: ImageIdentity, b: ImageIdentity): boolean {
  return a.configDigest === b.configDigest && a.diffIds.length === b.diffIds.length && a.diffIds.every((d, i) => d === b.diffIds[i]);
}

const platformSchema = z.looseObject({ os: z.string(), architecture: z.string(), variant: z.string().optional() });
const manifestSchema = z.looseObject({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  config: z.looseObject({ digest }),
  layers: z.array(z.looseObject({ digest })),
});
const indexSchema = z.looseObject({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  manifests: z.array(z.looseObject({ digest, mediaType: z.string().optional(), platform: platformSchema.optional() })),
});

export type ContentDocument =
  | { kind: 'manifest'; configDigest: string }
  | { kind: 'index'; manifests: Array<{ digest: string; platform: z.infer<typeof platformSchema> | null }> };

/** Pure: a manifest or an index as the content store holds it, checked against the digest it was asked by. */
export function parseContentDocument(bytes: Buffer, expectedDigest: string): ContentDocument {
  const got = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  if (got !== expectedDigest) throw new Error(`content ${expectedDigest} has digest ${got}`);
  let raw: unknown;
  try {
    raw = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new Error(`content ${expectedDigest} is not JSON: ${String(err)}`, { cause: err });
  }
  const index = indexSchema.safeParse(raw);
  if (index.success) return { kind: 'index', manifests: index.data.manifests.map((m) => ({ digest: m.digest, platform: m.platform ?? null })) };
  const manifest = manifestSchema.safeParse(raw);
  if (manifest.success) return { kind: 'manifest', configDigest: manifest.data.config.digest };
  throw new Error(`content ${expectedDigest} is neither an image manifest nor an index: ${manifest.error.message}`);
}

/** Pure: the manifest of an index for the image's platform (as `docker image inspect` gives Os/Architecture/Variant). */
export function manifestForPlatform(
  manifests: ReadonlyArray<{ digest: string; platform: { os: string; architecture: string; variant?: string | undefined } | null }>,
  platform: { os: string; architecture: string; variant?: string | undefined },
): string | null {
  const fits = manifests.filter((m) => m.platform !== null && m.platform.os === platform.os && m.platform.architecture === platform.architecture
    && (platform.variant === undefined || platform.variant === '' || m.platform.variant === platform.variant));
  return fits[0]?.digest ?? null;
}
