import { TwinlayerError } from '../log/errors.js';
import type { ErrorContext } from '../log/errors.js';

/** Codes: LAB_COMMAND (a setup command failed), LAB_TIMEOUT (a bounded wait ran out), LAB_STATE (API misuse), LAB_SUBNET. */
export class LabError extends TwinlayerError {
  constructor(code: 'LAB_COMMAND' | 'LAB_TIMEOUT' | 'LAB_STATE' | 'LAB_SUBNET', message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    super(code, message, context, options);
  }
}
