// Errors of the docker unit. Each has a stable code and names the container (or engine) it is about.
import { TwinlayerError } from '../log/errors.js';
import type { ErrorContext } from '../log/errors.js';

/** The engine's storage setup is one whose upper dirs twinlayer cannot resolve or trust (not overlay2, redirect_dir/metacopy, containerd snapshotter). */
export class EngineUnsupportedError extends TwinlayerError {
  constructor(reason: string, context: ErrorContext = {}) {
    super('DOCKER_ENGINE_UNSUPPORTED', `docker engine unsupported: ${reason}`, context);
  }
}

/** A container's GraphDriver dirs are missing, not overlay2, or point somewhere we must not write. */
export class LayerResolveError extends TwinlayerError {
  constructor(reason: string, context: ErrorContext, options?: { cause?: unknown }) {
    super('DOCKER_LAYER_REFUSED', `cannot use the container's layers: ${reason}`, context, options);
  }
}

/** A twin cannot be created or adopted: a same-named container is not a twin, or runs another image. */
export class TwinRefusedError extends TwinlayerError {
  readonly reason: string;
  constructor(reason: string, context: ErrorContext) {
    super('DOCKER_TWIN_REFUSED', `twin refused: ${reason}`, context);
    this.reason = reason;
  }
}

/** A twin must not be created from this spec: it asks for what the standby cannot recreate, for privileges without
 *  being trusted, or for what the host's policy refuses. `problems` names each field. */
export class TwinSpecRefusedError extends TwinlayerError {
  readonly problems: string[];
  constructor(problems: string[], context: ErrorContext) {
    super('DOCKER_TWIN_SPEC_REFUSED', `twin not created: ${problems.join('; ')}`, context);
    this.problems = problems;
  }
}

/** A twin cannot be created from this spec yet: this host lacks what it needs (a bind source, a device, a network,
 *  a plain named volume). A fact of the host that may change any moment, unlike a refused spec: checked again. */
export class TwinHostNotReadyError extends TwinlayerError {
  readonly problems: string[];
  constructor(problems: string[], context: ErrorContext) {
    super('DOCKER_TWIN_HOST_NOT_READY', `twin not created yet, this host lacks what its spec needs: ${problems.join('; ')}`, context);
    this.problems = problems;
  }
}

/** The image the twin needs is not present on this engine (no registry is assumed reachable). */
export class ImageMissingError extends TwinlayerError {
  constructor(imageId: string, context: ErrorContext) {
    super('DOCKER_IMAGE_MISSING', `image ${imageId} is not present on this engine`, { ...context, imageId, hint: 'load the image (docker load) or let it be shipped' });
  }
}

export class ContainerNotFoundError extends TwinlayerError {
  constructor(context: ErrorContext, options?: { cause?: unknown }) {
    super('DOCKER_CONTAINER_NOT_FOUND', 'container not found', context, options);
  }
}

/** Any other failure of a Docker API call, with the operation and the HTTP status when there was one. */
export class DockerApiError extends TwinlayerError {
  readonly statusCode: number | undefined;
  constructor(operation: string, statusCode: number | undefined, context: ErrorContext, options?: { cause?: unknown }) {
    const detail = options?.cause instanceof Error ? `: ${options.cause.message}` : '';
    super('DOCKER_API', `docker ${operation} failed${statusCode === undefined ? '' : ` (HTTP ${statusCode})`}${detail}`, context, options);
    this.statusCode = statusCode;
  }
}

/** Codes of a Docker API call that never reached a working engine (dockerd down or restarting). */
const ENGINE_GONE_CODES = new Set(['ECONNREFUSED', 'ENOENT', 'ECONNRESET', 'EPIPE']);

/** Whether `err` says the engine is not there (its socket refuses or is gone), not that a call about a container
 *  failed: transient, nothing to refuse a container for. */
export function isEngineUnavailable(err: unknown): boolean {
  if (!(err instanceof DockerApiError) || err.statusCode !== undefined) return false;
  const code = (err.cause as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && ENGINE_GONE_CODES.has(code);
}
