// Public surface of the docker unit. Only this folder imports dockerode.
export { DockerRuntime } from './runtime.js';
export type { DockerRuntimeOptions, ListProtectedOptions, ProtectedContainer, RefusedContainer, RemoveFailure, StartResult, TwinState } from './runtime.js';
export { engineFactsFromInfo } from './engine-facts.js';
export type { EngineFacts } from './engine-facts.js';
export { checkUpperDirFacts, layersFromGraphDriver, verifyUpperDirOnDisk } from './layers.js';
export type { OverlayLayers, UpperDirFacts } from './layers.js';
export { createOptionsFromSpec, networkModeProblem, NETWORK_MODES, specDigest, specFromInspect, twinLabels, twinSpecSchema } from './spec.js';
export type { PortBinding, RestartPolicy, RestartPolicyName, TwinSpec } from './spec.js';
export { NO_RESTART } from './spec.js';
export { inspectSchema, infoSchema } from './schemas.js';
export type { ContainerInspect, DockerInfo } from './schemas.js';
export { parseMountPoints, readMountPoints } from './mountinfo.js';
export { ENABLE_LABEL, SPEC_LABEL, TWIN_LABEL } from './labels.js';
export { ContainerNotFoundError, DockerApiError, EngineUnsupportedError, ImageMissingError, LayerResolveError, TwinRefusedError } from './errors.js';
