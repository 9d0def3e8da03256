/**
 * The exit codes of ctl, which scripts rely on (documented in ctl/README.md); pure.
 * One code per kind of outcome, whatever the command:
 */
export const EXIT = {
  ok: 0,
  /** bad arguments: nothing was sent */
  usage: 1,
  /** no answer from the API: connection refused, TLS handshake failed (wrong CA, certificate refused), timeout */
  connection: 2,
  /** 404: the device, command or key does not exist */
  notFound: 3,
  /** 409: stale expected version, a command too late to cancel */
  conflict: 4,
  /** 400, 413, 415, 422: the API refused the input (the reason is printed) */
  rejected: 5,
  /** 5xx, or an answer ctl cannot read */
  server: 6,
  /** 401, 403: the certificate is not allowed to do this (revoked, not an operator) */
  forbidden: 7,
  /** command send --wait: the command ended failed, rejected, expired or canceled */
  commandFailed: 8,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export function exitCodeForStatus(status: number): ExitCode {
  if (status >= 200 && status < 300) return EXIT.ok;
  if (status === 404) return EXIT.notFound;
  if (status === 409) return EXIT.conflict;
  if (status === 401 || status === 403) return EXIT.forbidden;
  if (status >= 400 && status < 500) return EXIT.rejected;
  return EXIT.server;
}
