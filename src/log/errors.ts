// Base error with a stable code and the context an operator needs (container, key, path) plus an optional hint.
export interface ErrorContext {
  container?: string;
  key?: string;
  path?: string;
  entry?: string;
  hint?: string;
  [extra: string]: unknown;
}

export class TwinlayerError extends Error {
  readonly code: string;
  readonly context: ErrorContext;
  constructor(code: string, message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    const where = ['container', 'key', 'path', 'entry']
      .map((k) => (context[k] === undefined ? '' : ` ${k}=${typeof context[k] === 'string' ? context[k] : JSON.stringify(context[k])}`))
      .join('');
    super(`${message}${where}${context.hint ? ` (hint: ${context.hint})` : ''}`, options);
    this.name = new.target.name;
    this.code = code;
    this.context = context;
  }
}
