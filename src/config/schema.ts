// The one configuration schema: every key, its env var and its default. Parsed once at the edge (cli), frozen.
import { hostname } from 'node:os';
import { z } from 'zod';
import { hostIpEntryProblem, parsePortRange } from '../docker/host-ports.js';
import { HOST_NAMESPACES } from '../docker/host-namespaces.js';
import { publicKeyLineRe } from '../store/signing-keys.js';

const ms = (def: number, min = 1) => z.coerce.number().int().min(min).default(def);
const bool = (def: boolean) =>
  z.union([z.boolean(), z.enum(['true', 'false', '1', '0', 'yes', 'no'])])
    .transform((v) => v === true || v === 'true' || v === '1' || v === 'yes')
    .default(def);
/** A list from a YAML/JSON array, or from one string of items separated by commas or newlines (an env variable). */
const list = <T extends z.ZodType>(item: T) =>
  z.preprocess((v) => (typeof v === 'string' ? v.split(/[,\n]/).map((x) => x.trim()).filter(Boolean) : v), z.array(item));
const absoluteDir = z.string().regex(/^(\/|(\/[^/\0]+)+)$/, 'expected an absolute path without a trailing slash')
  .refine((p) => !p.split('/').includes('..') && !p.split('/').includes('.'), 'expected a normalized path');
const listenAddress = z.string().regex(/^(\[[0-9a-fA-F:]+\]|[0-9.]+|localhost):\d{1,5}$/, 'expected HOST:PORT');

export const configSchema = z.strictObject({
  /** S3 endpoint URL; unset means AWS S3 in `region`. */
  endpoint: z.url().optional(),
  bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'expected an S3 bucket name of 3-63 lowercase characters'),
  prefix: z.string().regex(/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/, 'expected slash-separated words without leading or trailing slash').default('twinlayer'),
  region: z.string().min(1).default('us-east-1'),
  /** Path-style addressing (MinIO, s3rver, most self-hosted servers). */
  pathStyle: bool(false),
  group: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'expected 1-64 of A-Z a-z 0-9 . _ -').default('default'),
  hostId: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'expected 1-64 of A-Z a-z 0-9 . _ -').default(hostname().replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 64) || 'host'),
  dockerSocket: z.string().min(1).default('/var/run/docker.sock'),
  // The containerd image store (Docker 29's default): where the engine's containerd is, when what the engine says
  // (docker info, dockerDaemonConfig) and the usual sockets do not find it.
  containerdSocket: z.string().min(1).optional(),
  /** containerd's root dir (its `root`, /var/lib/containerd by default); default: what containerd reports. */
  containerdRoot: absoluteDir.optional(),
  ctrPath: z.string().min(1).default('ctr'),
  dockerDaemonConfig: z.string().min(1).default('/etc/docker/daemon.json'),
  label: z.string().min(1).default('twinlayer.enable'),
  stateDir: z.string().min(1).default('/var/lib/twinlayer'),
  debounceQuietMs: ms(50),
  debounceMaxMs: ms(500),
  uploadConcurrency: ms(4),
  /** Regular files larger than this many bytes ship as content-defined chunks, each stored once in the bucket
   *  (in packs under packs/); smaller ones go whole in the changeset. */
  chunkThresholdBytes: ms(1024 * 1024, 64 * 1024),
  downloadConcurrency: ms(4),
  startConcurrency: ms(8),
  pollIntervalMs: ms(250, 10),
  reconcileIntervalMs: ms(60_000, 100),
  /** A container's next commit is a full checkpoint once the deltas since its last one weigh more than this share of
   *  it, or once that one is older than checkpointMaxAgeMs (the defaults and why: src/pusher/checkpoint-policy.ts). */
  checkpointDeltaShare: z.coerce.number().positive().max(1000).default(0.5),
  checkpointMaxAgeMs: ms(6 * 60 * 60 * 1000, 1000),
  /** A due checkpoint waits until no delta was queued or published for this long, a minute at most (0: right after
   *  the delta that made it due); half of that minute at most, so the quiet period can end before the bound. */
  checkpointQuietMs: z.coerce.number().int().min(0).max(30_000).default(5000),
  /** Paths (relative to the container root) never shipped; a trailing /** excludes a subtree. */
  excludes: z.union([z.array(z.string()), z.string().transform((s) => s.split(',').map((x) => x.trim()).filter(Boolean))]).default([]),
  /** This host's Ed25519 private key (PEM, mode 0600, made by `twinlayer keygen`): signs every object it writes. */
  signingKeyFile: z.string().min(1).default('/etc/twinlayer/signing.key'),
  /** The group's public keys, one line per host (two while a host's key is rotated) as `twinlayer keygen` prints it;
   *  only objects signed by one of them are accepted. */
  trustedKeys: list(z.string().trim().regex(publicKeyLineRe, 'expected "[<hostId> ]ed25519:<44 base64 characters>" as `twinlayer keygen` prints it')).refine((a) => a.length <= 64, 'expected at most 64 keys').default([]),
  /** Accept bucket objects that no trusted key signed, and write unsigned without a key: only while moving a group to
   *  signed commits (anyone who can write the bucket can then choose what the standby stages and boots). */
  acceptUnsigned: bool(false),
  // The twin policy (issue 9): what a twin may be created with. A spec's privileged fields are honoured only when the
  // spec is trusted (signed by a key the group trusts), and then only as far as these keys allow.
  /** Honour privileged fields of specs no trusted key signed: anyone who can write the bucket gets them on this host. */
  trustUnsignedSpecs: bool(false),
  /** `--privileged`, device cgroup rules, a cgroup parent. */
  allowPrivileged: bool(false),
  /** Capabilities a twin may add (without CAP_); ALL for any. */
  allowedCapabilities: list(z.string().regex(/^(CAP_)?[A-Za-z_]{1,64}$/, 'expected capability names')).default(['NET_ADMIN', 'NET_RAW', 'NET_BIND_SERVICE', 'NET_BROADCAST']),
  /** Host devices a twin may map in. */
  allowedDevices: list(absoluteDir).default(['/dev/net/tun']),
  /** Host directories under which a twin's bind-mount sources may lie (symlinks resolved). */
  allowedBindRoots: list(absoluteDir).default([]),
  /** Namespaces a twin may share with the host. */
  allowedHostNamespaces: list(z.enum(HOST_NAMESPACES)).default(['network']),
  /** Sysctls a twin may set: names, or prefixes ending in * (net.*). */
  allowedSysctls: list(z.string().regex(/^[a-z0-9_]+(\.[a-zA-Z0-9_-]+)*(\.\*)?$/, 'expected sysctl names or prefixes like net.*')).default(['net.*']),
  /** Security options beyond no-new-privileges: seccomp, apparmor, SELinux labels, systempaths. */
  allowSecurityOpts: bool(false),
  /** Host ports a twin may publish: PORT or LOW-HIGH, optionally /tcp, /udp or /sctp. Privileged ports (below 1024)
   *  are where the host's own services listen: list each one a service needs (53/udp). */
  allowedHostPorts: list(z.string().superRefine((entry, ctx) => {
    const parsed = parsePortRange(entry);
    if (typeof parsed === 'string') ctx.addIssue({ code: 'custom', message: `expected PORT or LOW-HIGH with an optional /tcp, /udp or /sctp: ${parsed}` });
  })).default(['1024-65535']),
  /** Host addresses or CIDRs a twin's port bindings may name; the wildcard address needs none. */
  allowedHostIps: list(z.string().superRefine((entry, ctx) => {
    const problem = hostIpEntryProblem(entry);
    if (problem !== null) ctx.addIssue({ code: 'custom', message: `expected IP addresses or CIDRs: ${problem}` });
  })).default([]),
  /** Drivers a named volume a twin mounts may have on this host. */
  allowedVolumeDrivers: list(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$/, 'expected volume driver names')).default(['local']),
  /** Named volumes on this host with driver options other than a bind under allowedBindRoots (NFS, a block device). */
  allowVolumeOptions: bool(false),
  hookListen: listenAddress.default('127.0.0.1:7450'),
  hookToken: z.string().min(16, 'expected at least 16 characters').optional(),
  hookAllowNoToken: bool(false),
  /** Serve GET /metrics and /healthz here too, on their own and without a token (the hook stays on loopback); the
   *  only place `twinlayer push` serves them. Unset: metrics are served by the hook only. */
  metricsListen: listenAddress.optional(),
  finalizeDeadlineMs: ms(1000),
  bootTimeoutMs: ms(15_000),
  /** The agent: notify.sh records the latest VRRP state here; read at start (the hook may have been down). */
  vrrpStateFile: z.string().min(1).default('/run/twinlayer/vrrp-state'),
  /** The agent as primary looks for a successor of its generation this often (at most once a second). */
  fenceIntervalMs: z.coerce.number().int().min(50).max(1000).default(500),
  /** The agent as primary, told BACKUP/FAULT, waits this long for a MASTER that cancels it (VRRP flaps). */
  backupSettleMs: z.coerce.number().int().min(0).max(60_000).default(1000),
  /** Grace period of docker stop when the agent demotes (then SIGKILL). */
  stopTimeoutSeconds: z.coerce.number().int().min(0).max(300).default(1),
  /** Commits kept in the bucket for restore (GC, issue 12): at least this much history stays restorable. */
  retentionMs: z.coerce.number().int().min(60_000).default(24 * 3600_000),
  /** Blobs and packs no commit names stay this long after their upload (a commit in flight names them last). */
  gcGraceMs: z.coerce.number().int().min(60_000).default(3600_000),
  /** The primary garbage-collects the bucket this often; 0: never (`twinlayer gc`, with the group's pushers stopped, instead). */
  gcIntervalMs: z.coerce.number().int().min(0).default(3600_000),
  /** The primary ships each protected container's image to the bucket (images/), so a standby needs no registry. */
  shipImages: bool(true),
  logLevel: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
});

export type Config = Readonly<z.infer<typeof configSchema>>;
export type ConfigKey = keyof z.infer<typeof configSchema>;

/** TWINLAYER_* name of each key: camelCase -> UPPER_SNAKE. */
export function envName(key: string): string {
  return 'TWINLAYER_' + key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

export const configKeys = Object.keys(configSchema.shape) as ConfigKey[];
