// The namespaces a container may share with its host, on their own: the config schema names them, and importing them
// from twin-policy.ts would build the Docker spec schemas (spec-run.ts) on every start, before the hook listens.

/** The namespaces a container may share with its host (`--network host`, `--pid host`, `--cgroupns host`, ...). */
export const HOST_NAMESPACES = ['network', 'pid', 'ipc', 'uts', 'userns', 'cgroup'] as const;
export type HostNamespace = (typeof HOST_NAMESPACES)[number];
