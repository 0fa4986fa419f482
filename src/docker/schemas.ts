// zod schemas for the Docker API responses this unit reads. Only the fields we use are declared; the rest passes through.
import { z } from 'zod';
import { mountSchema } from './volumes.js';

const nullableArray = z.array(z.string()).nullable().optional();
const stringRecord = z.record(z.string(), z.string()).nullable().optional();

export const infoSchema = z.looseObject({
  Driver: z.string(),
  // Pairs such as ["Native Overlay Diff", "true"]; null on some drivers.
  DriverStatus: z.array(z.array(z.string())).nullable().optional(),
  DockerRootDir: z.string(),
  ServerVersion: z.string(),
  // ["name=seccomp,profile=default", "name=cgroupns", ...]: cgroupns is there when containers get a private cgroup
  // namespace unless they ask for the host's.
  SecurityOptions: z.array(z.string()).nullable().optional(),
  // The containerd dockerd runs on: its revision (all versions), its address and namespaces (Docker 27+).
  ContainerdCommit: z.looseObject({ ID: z.string().optional() }).nullable().optional(),
  Containerd: z.looseObject({
    Address: z.string().optional(),
    Namespaces: z.looseObject({ Containers: z.string().optional() }).nullable().optional(),
  }).nullable().optional(),
});
export type DockerInfo = z.infer<typeof infoSchema>;

const portBindingSchema = z.looseObject({ HostIp: z.string().optional(), HostPort: z.string().optional() });

export const inspectSchema = z.looseObject({
  Id: z.string(),
  Name: z.string(),
  Image: z.string(),
  State: z.looseObject({ Status: z.string(), Running: z.boolean() }),
  Config: z.looseObject({
    Hostname: z.string().optional(),
    User: z.string().optional(),
    ExposedPorts: z.record(z.string(), z.unknown()).nullable().optional(),
    Env: nullableArray,
    Cmd: nullableArray,
    Image: z.string(),
    WorkingDir: z.string().optional(),
    Entrypoint: nullableArray,
    Labels: stringRecord,
  }),
  HostConfig: z.looseObject({
    NetworkMode: z.string().optional(),
    PortBindings: z.record(z.string(), z.array(portBindingSchema).nullable()).nullable().optional(),
    RestartPolicy: z.looseObject({ Name: z.string().optional(), MaximumRetryCount: z.number().int().optional() }).nullable().optional(),
  }),
  GraphDriver: z.looseObject({
    Name: z.string(),
    Data: z.record(z.string(), z.string()).nullable().optional(),
  }),
  Mounts: z.array(mountSchema).nullable().optional(),
  // The networks the container is attached to; each endpoint is parsed where the spec takes it (spec-run.ts).
  NetworkSettings: z.looseObject({ Networks: z.record(z.string(), z.unknown()).nullable().optional() }).nullable().optional(),
});
export type ContainerInspect = z.infer<typeof inspectSchema>;

export const listEntrySchema = z.looseObject({
  Id: z.string(),
  Names: z.array(z.string()).nullable().optional(),
  Labels: stringRecord,
  State: z.string().optional(),
});
export const listSchema = z.array(listEntrySchema);

export const imageInspectSchema = z.looseObject({
  Id: z.string(),
  /** Bytes of the image's layers, uncompressed. */
  Size: z.number().int().nonnegative().optional(),
  Os: z.string().optional(),
  Architecture: z.string().optional(),
  Variant: z.string().optional(),
  RootFS: z.looseObject({ Type: z.string(), Layers: z.array(z.string()).nullable().optional() }).optional(),
});

export const imageListSchema = z.array(z.looseObject({ Id: z.string() }));

/** A network as `docker network inspect` shows it: the subnets a static address of a twin must lie in. */
export const networkInspectSchema = z.looseObject({
  Name: z.string(),
  Id: z.string(),
  IPAM: z.looseObject({ Config: z.array(z.looseObject({ Subnet: z.string().optional() })).nullable().optional() }).nullable().optional(),
});
export type NetworkInspect = z.infer<typeof networkInspectSchema>;
