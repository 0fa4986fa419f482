import { TwinlayerError, type ErrorContext } from '../log/errors.js';

/** The changeset is malformed or hostile; nothing was written. `context.entry` names the offending entry. */
export class ChangesetRejectedError extends TwinlayerError {
  constructor(message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    super('CHANGESET_REJECTED', message, context, options);
  }
}

/** A helper tool (getfattr, setfattr, mknod, sync) failed; the operation may be retried whole. */
export class ChangesetToolError extends TwinlayerError {
  constructor(message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    super('CHANGESET_TOOL_FAILED', message, context, options);
  }
}

/** The staging target itself is unusable (upper dir a symlink, tmp dir inside it or on another file system). */
export class StageTargetError extends TwinlayerError {
  constructor(message: string, context: ErrorContext = {}) {
    super('STAGE_TARGET_INVALID', message, context);
  }
}

/** The target has too little free space for the changeset right now; nothing was written. Unlike a rejection this
 *  says nothing about the changeset itself: retry once space is freed. */
export class ChangesetNoRoomError extends TwinlayerError {
  constructor(message: string, context: ErrorContext = {}) {
    super('CHANGESET_NO_ROOM', message, context);
  }
}

/** A commit failed and undoing it failed too: its undo log stays beside the upper dir, and recovery (recoverStaging)
 *  must succeed before anything else is staged into, or boots from, that upper dir. */
export class StageUndoError extends TwinlayerError {
  /** Why undoing failed; `cause` is the failure that made the undo necessary (its code: ENOSPC, EIO, ...). */
  readonly undoError: unknown;

  constructor(message: string, context: ErrorContext, errors: { cause: unknown; undoError: unknown }) {
    super('STAGE_UNDO_FAILED', message, context, { cause: errors.cause });
    this.undoError = errors.undoError;
  }
}

/** The upper dir holds a commit left half staged (its undo log is there): recoverStaging first. */
export class StagePendingError extends TwinlayerError {
  constructor(message: string, context: ErrorContext = {}) {
    super('STAGE_PENDING', message, context);
  }
}
