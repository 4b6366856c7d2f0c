// The error of the browser client, and the groups of error codes it acts on.
//
// The codes are the server's (src/livesettings/spec/error_codes.json lists them all, with the
// groups below); tests/test_error_codes.py fails when these sets drift from that file.

/** An error with the server's snake_case `code`, its `message` and `details` (`path`). */
export class LiveSettingsError extends Error {
  constructor(code, message, { status = null, details = null, mutationId = null } = {}) {
    super(message);
    this.name = "LiveSettingsError";
    this.code = code;
    this.status = status;
    this.details = details;
    this.path = details && typeof details.path === "string" ? details.path : null;
    this.mutationId = mutationId;
  }
}

/** A secret edit refused because the client is offline: the user retries when online. */
export const SECRET_CODES = new Set(["offline_secret"]);
/** Per-mutation errors that say nothing about the edit itself: retry it later. */
export const TRANSIENT_CODES = new Set(["storage_unavailable", "draining", "decrypt_failed"]);
/** The token or the session is not good (any more): authorise again, then resend. */
export const AUTH_CODES = new Set([
  "unauthorized",
  "token_expired",
  "invalid_token",
  "token_revoked",
  "session_revoked",
]);
/** Errors after which this client's session cannot continue: sign in again. */
export const SESSION_END_CODES = new Set(["session_expired", "signed_out"]);
