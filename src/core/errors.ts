// Errors with a stable `code`. Callers (and the CLI, across the control API)
// branch on the code, never on the message text.

export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'CONFIG_UNREADABLE'
  | 'SERVICE_UNKNOWN'
  | 'RELEASE_UNKNOWN'
  | 'RELEASE_INVALID'
  | 'DEPLOY_IN_PROGRESS'
  | 'DEPLOY_FAILED'
  | 'INSTANCE_CRASHED'
  | 'INSTANCE_UNHEALTHY'
  | 'NO_PREVIOUS_RELEASE'
  | 'DAEMON_UNREACHABLE'
  | 'BAD_REQUEST'
  | 'USAGE'
  | 'INTERNAL'
  | 'STORE_UNAVAILABLE'
  | 'LISTEN_FAILED'
  | 'HOOK_FAILED'
  | 'LOCK_TIMEOUT'
  | 'GIT_REF_UNKNOWN' | 'GIT_REF_INVALID' | 'GIT_UNREACHABLE' | 'GIT_FAILED'
  | 'CANARY_ABORTED'
  | 'NO_CANARY';

export class BatonError extends Error {
  readonly code: ErrorCode;
  /** Extra lines for the operator, e.g. the tail of an instance's log. */
  readonly details: string[];
  constructor(code: ErrorCode, message: string, details: string[] = []) {
    super(message);
    this.name = 'BatonError';
    this.code = code;
    this.details = details;
  }
  toJSON(): { code: ErrorCode; message: string; details: string[] } {
    return { code: this.code, message: this.message, details: this.details };
  }
}

export function isBatonError(err: unknown): err is BatonError {
  return err instanceof BatonError;
}

/** The message of anything thrown, for logs. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
