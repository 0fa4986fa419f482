// The standby's twin policy from the configuration (the keys are documented in schema.ts).
import type { TwinPolicy } from '../docker/index.js';
import type { Config } from './schema.js';

export function twinPolicyOf(config: Config): TwinPolicy {
  return Object.freeze({
    allowPrivileged: config.allowPrivileged,
    allowedCapabilities: Object.freeze([...config.allowedCapabilities]),
    allowedDevices: Object.freeze([...config.allowedDevices]),
    allowedBindRoots: Object.freeze([...config.allowedBindRoots]),
    allowedHostNamespaces: Object.freeze([...config.allowedHostNamespaces]),
    allowedSysctls: Object.freeze([...config.allowedSysctls]),
    allowSecurityOpts: config.allowSecurityOpts,
    allowedHostPorts: Object.freeze([...config.allowedHostPorts]),
    allowedHostIps: Object.freeze([...config.allowedHostIps]),
    allowedVolumeDrivers: Object.freeze([...config.allowedVolumeDrivers]),
    allowVolumeOptions: config.allowVolumeOptions,
  });
}
