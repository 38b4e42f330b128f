// Errors with a stable `code`. Callers (and the CLI, across the control API)
// branch on the code, never on the message text. Each code has one row below:
// the HTTP status the control API answers with, and the exit status of the CLI
// when a command ends with it. docs/errors.md documents the same table (a test
// keeps them in step).

/** The CLI's exit statuses (docs/errors.md). */
export const EXIT = {
  /** The command did what was asked. */
  OK: 0,
  /** The operation failed or was refused (a failed deploy leaves the serving release untouched). */
  FAILED: 1,
  /** The command line is wrong: unknown verb or flag, missing argument. Nothing was done. */
  USAGE: 2,
  /** The daemon could not be reached (not running, wrong socket, no permission). Nothing was done. */
  UNREACHABLE: 3,
  /** Interrupted by Ctrl-C (128 + SIGINT). */
  INTERRUPTED: 130,
} as const;

export type ExitStatus = (typeof EXIT)[keyof typeof EXIT];

interface ErrorKind {
  /** Answered by the control API with this status. */
  http: number;
  /** The CLI exits with this status. */
  exit: ExitStatus;
  /** One line for docs/errors.md. */
  meaning: string;
}

export const ERRORS = {
  USAGE: { http: 400, exit: EXIT.USAGE, meaning: 'the command line is wrong (unknown verb or flag, missing or extra argument, bad value)' },
  BAD_REQUEST: { http: 400, exit: EXIT.FAILED, meaning: 'a control API request the daemon cannot act on (bad body, unknown route, bad value)' },
  CONFIG_INVALID: { http: 422, exit: EXIT.FAILED, meaning: 'the config file has errors; each one is listed as file:line:col: key: message' },
  CONFIG_UNREADABLE: { http: 422, exit: EXIT.FAILED, meaning: 'the config file cannot be read (missing, no permission)' },
  SERVICE_UNKNOWN: { http: 404, exit: EXIT.FAILED, meaning: 'no service of that name in the config' },
  RELEASE_UNKNOWN: { http: 404, exit: EXIT.FAILED, meaning: 'no kept release of that id (see `baton releases SERVICE`)' },
  RELEASE_INVALID: { http: 422, exit: EXIT.FAILED, meaning: 'the release directory cannot be used (missing, not a directory, unreadable)' },
  NO_PREVIOUS_RELEASE: { http: 409, exit: EXIT.FAILED, meaning: 'a rollback with nothing to roll back to' },
  NO_CANARY: { http: 409, exit: EXIT.FAILED, meaning: 'promote or abort while no canary is rolling out' },
  DASHBOARD_OFF: { http: 409, exit: EXIT.FAILED, meaning: '`baton dashboard` while the config has no `dashboard:` section' },
  DEPLOY_IN_PROGRESS: { http: 409, exit: EXIT.FAILED, meaning: 'another deployment of the service is running' },
  DEPLOY_FAILED: { http: 500, exit: EXIT.FAILED, meaning: 'the deployment failed; the serving release is untouched' },
  DEPLOY_CANCELLED: { http: 409, exit: EXIT.FAILED, meaning: 'the deployment was cancelled before its switch (`baton abort`, or Ctrl-C of `baton deploy`); the serving release is untouched' },
  NOTHING_RUNNING: { http: 409, exit: EXIT.FAILED, meaning: 'abort with no deployment to abort (none running, or it already switched traffic: roll back instead)' },
  CANARY_ABORTED: { http: 409, exit: EXIT.FAILED, meaning: 'the canary was aborted (by the operator or its analysis); traffic went back to the stable release' },
  INSTANCE_CRASHED: { http: 500, exit: EXIT.FAILED, meaning: 'an instance could not start or exited before it became healthy (the details carry its log\'s tail)' },
  INSTANCE_UNHEALTHY: { http: 500, exit: EXIT.FAILED, meaning: 'an instance did not pass its health check in time' },
  HOOK_FAILED: { http: 500, exit: EXIT.FAILED, meaning: 'a hook (build, migrate, smoke, after_switch) exited non-zero or timed out' },
  LOCK_TIMEOUT: { http: 409, exit: EXIT.FAILED, meaning: 'the migration lock is held by another process for too long (the message names it)' },
  GIT_REF_UNKNOWN: { http: 404, exit: EXIT.FAILED, meaning: 'the branch, tag or commit does not exist in the service\'s repository' },
  GIT_REF_INVALID: { http: 400, exit: EXIT.FAILED, meaning: 'not a valid branch, tag or commit name' },
  GIT_UNREACHABLE: { http: 502, exit: EXIT.FAILED, meaning: 'the service\'s git repository cannot be reached or read' },
  GIT_FAILED: { http: 500, exit: EXIT.FAILED, meaning: 'a git command failed (the details carry its output)' },
  TLS_CERT_INVALID: { http: 422, exit: EXIT.FAILED, meaning: 'a certificate and key cannot be used together (unparsable, or the key does not match); the message names the files' },
  TLS_CERT_UNREADABLE: { http: 422, exit: EXIT.FAILED, meaning: 'a certificate or key file cannot be read (missing, no permission)' },
  ACME_FAILED: { http: 502, exit: EXIT.FAILED, meaning: 'obtaining a certificate from the ACME directory failed (retried with backoff; the current certificate stays)' },
  CONTROL_UNAUTHORIZED: { http: 401, exit: EXIT.FAILED, meaning: 'a request to the remote (TCP) control listener without the right bearer token; it reached nothing and is in the audit log' },
  LISTEN_FAILED: { http: 500, exit: EXIT.FAILED, meaning: 'a listener cannot be opened (address in use, no permission for the port)' },
  UPGRADE_IN_PROGRESS: { http: 409, exit: EXIT.FAILED, meaning: 'the daemon is handing over to a new daemon (`baton upgrade`): operations that change state are refused until it is done; retry in a moment' },
  UPGRADE_REFUSED: { http: 409, exit: EXIT.FAILED, meaning: '`baton upgrade` refused before anything changed: a deployment holds or drains a service, or a service is paused (the message says which)' },
  UPGRADE_FAILED: { http: 500, exit: EXIT.FAILED, meaning: 'the new daemon did not come up (exited, bad config, crash, no answer in time); the old daemon kept serving and took its state back (the message says why)' },
  STORE_UNAVAILABLE: { http: 503, exit: EXIT.FAILED, meaning: 'the state database cannot be opened or written' },
  DAEMON_UNREACHABLE: { http: 503, exit: EXIT.UNREACHABLE, meaning: 'the CLI cannot reach the daemon\'s control socket (the message names the socket and the config used)' },
  SSH_FAILED: { http: 502, exit: EXIT.FAILED, meaning: 'ssh to a fleet host failed (unreachable, host key refused, authentication); the message is ssh\'s own' },
  FLEET_PREFLIGHT_FAILED: { http: 409, exit: EXIT.FAILED, meaning: 'a fleet host failed the preflight (unreachable, no baton, incompatible version, service missing, no disk space); nothing was changed' },
  FLEET_LOCKED: { http: 409, exit: EXIT.FAILED, meaning: 'another rollout holds the fleet lock (the message names the holder and since when)' },
  FLEET_ROLLOUT_FAILED: { http: 500, exit: EXIT.FAILED, meaning: 'a fleet host failed during a rollout (deploy, health, lost); the switched hosts were reverted unless --no-revert' },
  FLEET_NO_ROLLOUT: { http: 409, exit: EXIT.FAILED, meaning: '`baton fleet resume` or `abort` with no such rollout to act on' },
  INTERNAL: { http: 500, exit: EXIT.FAILED, meaning: 'a bug in baton: please report it with the daemon\'s log' },
} as const satisfies Record<string, ErrorKind>;

export type ErrorCode = keyof typeof ERRORS;

export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERRORS, code);
}

export class BatonError extends Error {
  readonly code: ErrorCode;
  /** Extra lines for the operator, e.g. the tail of an instance's log. */
  readonly details: string[];
  constructor(code: ErrorCode, message: string, details: string[] = [], options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BatonError';
    this.code = code;
    this.details = details;
  }
  get httpStatus(): number {
    return ERRORS[this.code].http;
  }
  get exitStatus(): ExitStatus {
    return ERRORS[this.code].exit;
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
