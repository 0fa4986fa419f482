// Errors of the hook unit, with stable codes.
import { TwinlayerError, type ErrorContext } from '../log/errors.js';

export type HookErrorCode = 'HOOK_NO_TOKEN' | 'HOOK_BAD_LISTEN' | 'HOOK_LISTEN_FAILED' | 'HOOK_NOT_READY';

export class HookError extends TwinlayerError {
  declare readonly code: HookErrorCode;
  constructor(code: HookErrorCode, message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    super(code, message, context, options);
  }
}
