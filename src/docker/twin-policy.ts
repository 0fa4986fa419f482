// What a spec may make a twin do on the standby. A spec comes from the bucket, and a spec that asks for privileges
// (privileged mode, capabilities, devices, host namespaces, bind mounts, sysctls, weakened confinement, host ports
// where the host's own services live) is a way to root on the standby: such fields are honoured only from a spec the
// group trusts (signed by a key it trusts), and the standby's own policy (config) may refuse them anyway. Pure: the
// caller says whether the spec is trusted and what the standby's engine gives every container anyway.
import { describeBinding, hostBindingsOf, hostIpAllowed, isWildcardIp, portsAllowed } from './host-ports.js';
import type { TwinSpec } from './spec.js';
import { parseBind } from './spec-run.js';
import { unreplicatedVolumeRefusal } from './volumes.js';
import { HOST_NAMESPACES, type HostNamespace } from './host-namespaces.js';
export { HOST_NAMESPACES, type HostNamespace };

/** What the standby's engine gives every container that does not say otherwise: asking for it is no privilege. */
export interface EngineDefaults {
  /** The engine's default cgroup namespace: `host` on cgroup v1 (unless dockerd says otherwise), `private` on v2. */
  cgroupnsMode: 'host' | 'private';
}

/** When nothing is known of the engine: every `host` is a privilege. */
export const STRICT_ENGINE_DEFAULTS: EngineDefaults = Object.freeze({ cgroupnsMode: 'private' });

/** The standby's host-side policy: what it lets a trusted spec ask for. */
export interface TwinPolicy {
  /** `--privileged`, device cgroup rules and a cgroup parent. */
  allowPrivileged: boolean;
  /** Capabilities a spec may add, without the CAP_ prefix; `ALL` lets it add any. */
  allowedCapabilities: readonly string[];
  /** Host devices a spec may map in (exact paths). */
  allowedDevices: readonly string[];
  /** Host directories under which bind-mount sources may lie (resolved, symlinks followed). */
  allowedBindRoots: readonly string[];
  /** Namespaces a twin may share with the host. */
  allowedHostNamespaces: readonly HostNamespace[];
  /** Sysctls a spec may set: exact names, or a prefix ending in `*` (`net.*`). */
  allowedSysctls: readonly string[];
  /** Security options other than no-new-privileges: seccomp, apparmor, SELinux labels, unmasked system paths. */
  allowSecurityOpts: boolean;
  /** Host ports a twin may publish: `PORT`, `LOW-HIGH`, either with `/tcp`, `/udp` or `/sctp` (none: any protocol).
   *  A binding without a host port gets one of Linux's default ephemeral range (32768-60999), checked as such. */
  allowedHostPorts: readonly string[];
  /** Host addresses (or CIDRs) a port binding may name; the wildcard (no address, 0.0.0.0, ::) needs none. */
  allowedHostIps: readonly string[];
  /** Drivers a named volume the twin mounts may have on this host (one that exists before the twin does). */
  allowedVolumeDrivers: readonly string[];
  /** A named volume on this host with driver options other than a bind of a path under allowedBindRoots (an NFS
   *  share, a block device, a tmpfs): the twin gets whatever they mount. */
  allowVolumeOptions: boolean;
}

/** Defaults for network services: the capabilities and the tun device a router, DHCP server or firewall needs,
 *  host networking, net.* sysctls, unprivileged host ports on the wildcard address; no privileged mode, no bind
 *  mounts, no other host namespace, no privileged host port (the host's own services listen there, and Docker's
 *  DNAT rules for a published port take its traffic even from a service that has the port bound), no specific host
 *  address, only plain local volumes. */
export const DEFAULT_TWIN_POLICY: TwinPolicy = Object.freeze({
  allowPrivileged: false,
  allowedCapabilities: Object.freeze(['NET_ADMIN', 'NET_RAW', 'NET_BIND_SERVICE', 'NET_BROADCAST']),
  allowedDevices: Object.freeze(['/dev/net/tun']),
  allowedBindRoots: Object.freeze([]),
  allowedHostNamespaces: Object.freeze(['network'] as HostNamespace[]),
  allowedSysctls: Object.freeze(['net.*']),
  allowSecurityOpts: false,
  allowedHostPorts: Object.freeze(['1024-65535']),
  allowedHostIps: Object.freeze([]),
  allowedVolumeDrivers: Object.freeze(['local']),
  allowVolumeOptions: false,
});

/** One privileged field of a spec: where it is (Docker's name), its value, and whether a policy allows it. */
export interface Privilege {
  field: string;
  value: string;
  /** The policy key that decides it; null when trust alone is enough. */
  policyKey: keyof TwinPolicy | null;
  allowedBy(policy: TwinPolicy): boolean;
  /** Only a trusted spec may ask for it (false: the policy decides, trusted or not, e.g. an unprivileged host port). */
  needsTrust: boolean;
}

/** CAP_NET_ADMIN, net_admin and NET_ADMIN name the same capability. */
export function capabilityName(cap: string): string {
  const upper = cap.toUpperCase();
  return upper.startsWith('CAP_') ? upper.slice(4) : upper;
}

function sysctlAllowed(name: string, patterns: readonly string[]): boolean {
  return patterns.some((p) => (p.endsWith('*') ? name.startsWith(p.slice(0, -1)) : name === p));
}

/** Pure: `dir` or a path below it. */
export function isAtOrUnder(path: string, dir: string): boolean {
  if (dir === '/') return path.startsWith('/');
  return path === dir || path.startsWith(`${dir}/`);
}

const NO_NEW_PRIVILEGES = new Set(['no-new-privileges', 'no-new-privileges:true', 'no-new-privileges=true']);
// Log drivers that write on the standby itself; the others send the container's output to an address the spec names.
const LOCAL_LOG_DRIVERS = new Set(['', 'json-file', 'local', 'journald', 'none']);

/** Pure: the bind-mount sources of a spec (Binds with an absolute source, Mounts of type bind). */
export function bindSources(spec: TwinSpec): string[] {
  const out: string[] = [];
  for (const b of spec.hostConfig?.Binds ?? []) {
    const parsed = parseBind(b);
    if (typeof parsed !== 'string' && parsed.kind === 'bind') out.push(parsed.source);
  }
  for (const m of spec.hostConfig?.Mounts ?? []) if (m.Type === 'bind' && m.Source !== undefined) out.push(m.Source);
  return out;
}

/** Pure: every field of the spec the trust or the policy decides on, privileged or not (an unprivileged host port is
 *  no privilege, yet must lie in allowedHostPorts). */
export function gatedFieldsOf(spec: TwinSpec, engine: EngineDefaults = STRICT_ENGINE_DEFAULTS, foreignVolumes: readonly string[] = []): Privilege[] {
  const h = spec.hostConfig ?? {};
  const out: Privilege[] = [];
  const add = (field: string, value: string, policyKey: keyof TwinPolicy | null, allowedBy: (p: TwinPolicy) => boolean, needsTrust = true): void => {
    out.push({ field, value, policyKey, allowedBy, needsTrust });
  };
  // A volume of this host that twinlayer did not create is an operator's (or another service's): an untrusted spec
  // naming it (a bind, a mount, its `volumes`) would read it, or have it staged into. The trust decides, the host's
  // volume checks (standby-checks.ts) still apply.
  for (const name of foreignVolumes) add(FOREIGN_VOLUME_FIELD, name, null, () => true);
  if (h.Privileged === true) add('HostConfig.Privileged', 'true', 'allowPrivileged', (p) => p.allowPrivileged);
  for (const cap of h.CapAdd ?? []) {
    const name = capabilityName(cap);
    add('HostConfig.CapAdd', name, 'allowedCapabilities', (p) => p.allowedCapabilities.some((c) => c === 'ALL' || capabilityName(c) === name));
  }
  for (const d of h.Devices ?? []) add('HostConfig.Devices', d.PathOnHost, 'allowedDevices', (p) => p.allowedDevices.includes(d.PathOnHost));
  for (const rule of h.DeviceCgroupRules ?? []) add('HostConfig.DeviceCgroupRules', rule, 'allowPrivileged', (p) => p.allowPrivileged);
  if (h.CgroupParent !== undefined && h.CgroupParent !== '') add('HostConfig.CgroupParent', h.CgroupParent, 'allowPrivileged', (p) => p.allowPrivileged);
  for (const opt of h.SecurityOpt ?? []) {
    if (NO_NEW_PRIVILEGES.has(opt)) continue;
    add('HostConfig.SecurityOpt', opt.length > 80 ? `${opt.slice(0, 77)}...` : opt, 'allowSecurityOpts', (p) => p.allowSecurityOpts);
  }
  const namespaces: Array<[HostNamespace, string, string | undefined]> = [
    ['network', 'NetworkMode', spec.networkMode], ['pid', 'HostConfig.PidMode', h.PidMode], ['ipc', 'HostConfig.IpcMode', h.IpcMode],
    ['uts', 'HostConfig.UTSMode', h.UTSMode], ['userns', 'HostConfig.UsernsMode', h.UsernsMode],
    // The host's cgroup namespace is what every container of a cgroup v1 engine gets: a privilege only where the
    // engine's default is private (cgroup v2), which a spec captured on a v1 primary says `host` for.
    ['cgroup', 'HostConfig.CgroupnsMode', engine.cgroupnsMode === 'host' ? undefined : h.CgroupnsMode],
  ];
  for (const [ns, field, mode] of namespaces) {
    if (mode === 'host') add(field, 'host', 'allowedHostNamespaces', (p) => p.allowedHostNamespaces.includes(ns));
  }
  for (const source of bindSources(spec)) {
    add('HostConfig.Binds/Mounts', source, 'allowedBindRoots', (p) => p.allowedBindRoots.some((root) => isAtOrUnder(source, root)));
  }
  for (const b of hostBindingsOf(spec)) {
    const shown = describeBinding(b);
    const { range } = b;
    // A privileged port is where the host's own services listen (sshd, a resolver): taking it needs trust.
    const privileged = range === null || range.low < 1024;
    add(b.field, shown, 'allowedHostPorts', (p) => range !== null && portsAllowed(range, b.protocol, p.allowedHostPorts), privileged);
    if (!isWildcardIp(b.hostIp)) add(b.field, shown, 'allowedHostIps', (p) => hostIpAllowed(b.hostIp, p.allowedHostIps));
  }
  for (const name of Object.keys(h.Sysctls ?? {})) add('HostConfig.Sysctls', name, 'allowedSysctls', (p) => sysctlAllowed(name, p.allowedSysctls));
  const logDriver = h.LogConfig?.Type ?? '';
  if (!LOCAL_LOG_DRIVERS.has(logDriver)) add('HostConfig.LogConfig.Type', logDriver, null, () => true);
  if (h.Runtime !== undefined && h.Runtime !== '' && h.Runtime !== 'runc') add('HostConfig.Runtime', h.Runtime, null, () => true);
  return out;
}

/** Pure: every privileged field the spec asks for (honoured only from a trusted spec). */
export function privilegesOf(spec: TwinSpec, engine: EngineDefaults = STRICT_ENGINE_DEFAULTS, foreignVolumes: readonly string[] = []): Privilege[] {
  return gatedFieldsOf(spec, engine, foreignVolumes).filter((p) => p.needsTrust);
}

const FOREIGN_VOLUME_FIELD = 'an existing volume of this host that twinlayer did not create:';

/** Pure: the refusal of an untrusted spec that mounts these volumes of the host (as specRefusals words it). */
export function foreignVolumeRefusal(names: readonly string[]): string {
  return `the spec is not signed by a key the group trusts and asks for ${names.map((n) => `${FOREIGN_VOLUME_FIELD} ${n}`).join(', ')}: privileged fields are honoured only from a signed spec`;
}

export interface TwinTrust {
  /** The spec is signed by a key the group trusts (or the host trusts its bucket's specs as a whole). */
  trusted: boolean;
  policy: TwinPolicy;
  /** What the standby's engine gives every container anyway. Default STRICT_ENGINE_DEFAULTS. */
  engine?: EngineDefaults;
  /** The volumes the spec mounts that exist on this host without twinlayer's label (an operator's): only a trusted
   *  spec may mount them. Default none. */
  foreignVolumes?: readonly string[];
}

function describe(p: Privilege): string {
  return `${p.field} ${p.value}`;
}

/**
 * Pure: why a twin must not be created from this spec; empty when it may. Names each field: what the primary has that
 * a twin cannot have, privileged fields of a spec that is not trusted, and what the host's policy refuses.
 */
export function specRefusals(spec: TwinSpec, trust: TwinTrust): string[] {
  const refusals = (spec.unsupported ?? []).map((u) => `not recreated: ${u}`);
  // Trusted or not: a twin without a volume's data differs from the primary; only the host's policy accepts that.
  for (const v of spec.unreplicatedVolumes ?? []) {
    const refusal = unreplicatedVolumeRefusal(v, trust.policy);
    if (refusal !== null) refusals.push(`not replicated: ${refusal}`);
  }
  const gated = gatedFieldsOf(spec, trust.engine, trust.foreignVolumes);
  const privileges = gated.filter((p) => p.needsTrust);
  if (!trust.trusted && privileges.length > 0) {
    refusals.push(`the spec is not signed by a key the group trusts and asks for ${privileges.map(describe).join(', ')}: privileged fields are honoured only from a signed spec`);
  }
  for (const p of gated) {
    if (p.policyKey === null || p.allowedBy(trust.policy)) continue;
    const setting = trust.policy[p.policyKey];
    refusals.push(`the host policy refuses ${describe(p)} (${p.policyKey}: ${Array.isArray(setting) ? (setting.length === 0 ? 'none' : setting.join(', ')) : String(setting)})`);
  }
  return refusals;
}
