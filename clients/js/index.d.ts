// Types of the npm package `livesettings` (the module src/livesettings.js and what it
// re-exports). Checked by `npx tsc --noEmit -p clients/js` over examples/typed.ts.

/** A JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A secret as every client sees it: never the value, at most its last four characters. */
export interface MaskedSecret {
  set: true;
  /** The last four characters (secrets of 12 characters or more only). */
  last4?: string;
  /** When it was set (ISO 8601), once the server has it. */
  updated_at?: string;
  /** Shown by the client that set it until the server confirms it. */
  pending?: boolean;
}

/** One user's settings document (DESIGN §2). */
export interface Settings {
  theme: "light" | "dark" | "system";
  /** A BCP 47 language tag. */
  language: string;
  /** Free-form preferences (checked against the operator's JSON Schema when one is set). */
  preferences: { [key: string]: Json };
  /** Providers and models, e.g. `{ openai: { model: "gpt-4o" }, default: "openai" }`. */
  ai_providers: { [key: string]: Json };
  /** API keys by name, masked. */
  api_keys: { [name: string]: MaskedSecret };
}

/**
 * A JSON merge patch (RFC 7386) of the settings: `null` removes (or resets a field to its
 * default). An API key is set with its plaintext (sent at once, never stored) or removed with
 * `null`.
 */
export interface SettingsPatch {
  theme?: Settings["theme"] | null;
  language?: string | null;
  preferences?: { [key: string]: Json } | null;
  ai_providers?: { [key: string]: Json } | null;
  api_keys?: { [name: string]: string | null };
}

/** A path: a JSON Pointer ("/ai_providers/openai/model"), a dotted name, or segments. */
export type SettingsPath = string | readonly string[];

/** `status.connection`. */
export type ConnectionState = "connecting" | "online" | "offline" | "error";

/** The values of `status.connection` by name. */
export declare const Connection: Readonly<{
  CONNECTING: "connecting";
  ONLINE: "online";
  OFFLINE: "offline";
  ERROR: "error";
}>;

/** The `status` of a LiveSettings client (a copy). */
export interface SyncStatus {
  connection: ConnectionState;
  /** Catching up after a (re)connect, or edits sent and not yet acknowledged. */
  syncing: boolean;
  /** Pending edits (this tab's and the other tabs'). */
  unsaved: number;
  /** When the client was last in sync with the server (ms since the epoch). */
  lastSyncAt: number | null;
  errorCount: number;
  syncsPerMinute: number;
  /** The last error about the connection or the client as a whole; a refused edit is not one. */
  error: string | null;
  transport: "ws" | "sse" | null;
  /** The confirmed revision. */
  revision: number;
}

/** The detail of the `conflict` event: an edit of this client lost, or overwrote another. */
export interface Conflict {
  /** The JSON Pointer of the value. */
  path: string;
  /** This client's value (undefined when only part of it was kept). */
  mine: Json | undefined;
  /** The value that was kept. */
  winner: Json | null;
  /** True when this client's edit lost. */
  lost: boolean;
  kept: "yours" | "theirs" | "partial";
  revision: number;
  mutationId: string | null;
}

/** Where a change of the shown settings came from. */
export type ChangeSource = "local" | "tab" | "server" | "refresh" | "ack" | "rejected" | "adopted";

export interface ChangeDetail {
  settings: Settings;
  revision: number;
  source: ChangeSource;
}

/** The detail of the `error` event. */
export interface ErrorDetail {
  code: string;
  message: string;
  /** The field a refused edit named. */
  path: string | null;
  mutationId: string | null;
  status: number | null;
}

/** The detail of the `tokens` event: a refresh token given by the app was rotated. */
export interface TokensDetail {
  accessToken: string;
  refreshToken: string;
  expiresAt: number | null;
  userId: string;
}

/** A role in a team, from the most to the least able. */
export type TeamRole = "owner" | "admin" | "member" | "viewer";

/** A team document's key. */
export type TeamDoc = `team:${string}`;

/** A team the caller belongs to, with the caller's role in it. */
export interface Team {
  team_id: string;
  name: string;
  role: TeamRole;
  created_at?: string | number;
}

/** A member of a team. */
export interface Member {
  user_id: string;
  role: TeamRole;
  username?: string | null;
  added_at?: string | number;
}

/** How a member is named and which role they get (`setMember`). */
export interface MemberChange {
  userId?: string;
  username?: string;
  role: TeamRole;
}

/** What the caller sees inside a team: their own values over the team's over the default. */
export interface EffectiveSettings {
  settings: Settings;
  team_id: string;
  team_revision: number;
  revision: number;
}

/**
 * The detail of the `membership` event: the user's role in the team of `doc` changed (null:
 * removed); for the client's own team document, also when it first becomes known.
 */
export interface MembershipDetail {
  doc: TeamDoc;
  role: TeamRole | null;
}

/** Whether a role may write a field: `{ok: true}`, or `{ok: false, reason}` for the user. */
export interface WriteCheck {
  ok: boolean;
  reason?: string;
}

export interface LiveSettingsEventMap {
  change: ChangeDetail;
  apiKeysChange: { apiKeys: Settings["api_keys"] };
  status: SyncStatus;
  conflict: Conflict;
  error: ErrorDetail;
  tokens: TokensDetail;
  membership: MembershipDetail;
}

/** What a client needs of a WebSocket instance (the browser's, or the `ws` package's). */
export interface WebSocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** A WebSocket class: `globalThis.WebSocket`, or `ws`'s default export in Node. */
export type WebSocketClass = new (url: string) => WebSocketLike;

/** A token, or a function returning a fresh one (called again before expiry). */
export type TokenSource = string | (() => string | Promise<string>);

/** The part of the Web Storage API the client uses (localStorage by default). */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
  key(index: number): string | null;
  readonly length: number;
}

export interface LiveSettingsOptions {
  /** The server's origin (default: this page's). Needed in Node. */
  url?: string;
  /** An access token (a user's, or a service token with `userId`), or a function for one. */
  token?: TokenSource;
  /** A built-in user's refresh token: the client rotates it before the access token expires. */
  refreshToken?: string;
  /** Cookie mode, for pages of the server's own origin. */
  refreshCookie?: boolean;
  /** Needed when the token is not a JWT with `sub`; with a service token, the user followed. */
  userId?: string;
  /** Debounce in ms before an edit is sent (default 1500); null or false: only `saveNow()`. */
  autoSaveDelay?: number | null | false;
  heartbeatInterval?: number;
  heartbeatTimeout?: number;
  reconnectDelay?: number;
  maxReconnectDelay?: number;
  refreshLeadTime?: number;
  requestTimeout?: number;
  /** "auto" (default: WebSocket, SSE when it cannot connect), "websocket" or "sse". */
  transport?: "auto" | "websocket" | "sse";
  /** Where settings are cached (default: localStorage in a browser page, else memory). */
  storage?: StorageLike | null;
  /** The WebSocket class where there is no global one (Node: `ws`); without any: SSE. */
  WebSocket?: WebSocketClass;
  /** Share edits and tokens with the user's other tabs (default: only in a browser page). */
  tabs?: boolean;
  /** A team's document ("team:<team_id>") instead of the user's own (null, the default). */
  doc?: TeamDoc | string | null;
}

/** A session returned by `signIn`, `signUp` or `resumeSession`. */
export interface Session {
  access_token: string;
  expires_at: number | null;
  user_id: string | null;
  username: string | null;
  refresh_token?: string | null;
  cookie?: true;
}

export interface SignInOptions {
  url?: string;
  username: string;
  password: string;
  cookie?: boolean;
  storage?: StorageLike | null;
}

export interface StoredSessionOptions {
  url?: string;
  storage?: StorageLike | null;
}

/** Cookie mode: the user signed in on this browser (no token). */
export interface SignedInUser {
  user_id: string;
  username: string | null;
}

/** One entry of `history()`. */
export interface HistoryEntry {
  revision: number;
  patch: { [key: string]: Json };
  mutation_id: string | null;
  client_id: string | null;
  committed_at: number;
  mine: boolean;
}

/** One change of an account export, as the change feed shows it (secrets masked). */
export interface ExportedChange {
  revision: number;
  patch: { [key: string]: Json };
  mutation_id: string | null;
  client_id: string | null;
  committed_at: number;
  conflicts: unknown[];
}

/** `exportAccount()`: everything the account holds, secrets masked. */
export interface AccountExport {
  format: "livesettings-account-export";
  version: 1;
  exported_at: string;
  user: { user_id: string; username: string | null; created_at: string | null };
  revision: number;
  settings: Settings;
  updated_at: string | null;
  /** Every retained change up to `revision`, oldest first. */
  changes: ExportedChange[];
  /** False when older changes were pruned from the server's change log. */
  history_complete: boolean;
  teams: { team_id: string; name: string; role: TeamRole }[];
}

/** Options a LiveSettings takes when they are not given. */
export declare const DEFAULT_OPTIONS: Readonly<Required<
  Pick<
    LiveSettingsOptions,
    | "heartbeatInterval"
    | "heartbeatTimeout"
    | "reconnectDelay"
    | "maxReconnectDelay"
    | "refreshLeadTime"
    | "transport"
    | "requestTimeout"
  >
> & { autoSaveDelay: number | null | false }>;

/** An error with the server's snake_case `code` (or one of the client's own). */
export declare class LiveSettingsError extends Error {
  constructor(
    code: string,
    message: string,
    options?: { status?: number | null; details?: unknown; mutationId?: string | null },
  );
  name: "LiveSettingsError";
  code: string;
  status: number | null;
  details: unknown;
  /** The field the error names (`details.path`). */
  path: string | null;
  mutationId: string | null;
}

/** Live settings of one user, in a browser page or a Node process. */
export declare class LiveSettings extends EventTarget {
  constructor(options?: LiveSettingsOptions);
  static fromSession(session: Session, options?: LiveSettingsOptions): LiveSettings;
  static signIn(options: SignInOptions): Promise<Session>;
  static signUp(options: SignInOptions): Promise<Session>;
  static resumeSession(options?: StoredSessionOptions): Promise<Session | null>;
  static signedInUser(storage?: StorageLike | null): SignedInUser | null;
  static finishPendingLogout(options?: StoredSessionOptions): Promise<boolean>;
  static forgetStoredTokens(): void;
  static loadSession(): null;
  static clearSession(storage?: StorageLike | null): void;

  readonly url: string;
  readonly userId: string;
  readonly clientId: string;
  readonly tabId: string;
  /** The document followed: "team:<id>", or null for the user's own. */
  readonly doc: TeamDoc | null;
  /** The user's role in this team document once known (null: personal, unknown, removed). */
  readonly role: TeamRole | null;
  autoSaveDelay: number | null | false | undefined;
  /** Resolves once the client is first in sync with the server. */
  readonly ready: Promise<boolean>;
  /** The settings as shown: the confirmed ones with every pending edit applied (a copy). */
  readonly settings: Settings;
  readonly revision: number;
  readonly status: SyncStatus;

  /** Listen to an event; returns the function that stops listening. */
  on<K extends keyof LiveSettingsEventMap>(
    type: K,
    callback: (detail: LiveSettingsEventMap[K]) => void,
  ): () => void;
  set(path: SettingsPath, value: Json | undefined): void;
  update(patch: SettingsPatch): void;
  /** Send every pending edit now; resolves true once saved (false: closed before). */
  saveNow(): Promise<boolean>;
  refresh(): Promise<Settings>;
  history(options?: { limit?: number }): Promise<HistoryEntry[]>;
  revert(revision: number): Promise<{ revision: number; conflicts: unknown[] }>;
  signOut(): Promise<void>;
  forgetCache(options?: { all?: boolean }): void;
  /** Close the connection and release every timer, socket and channel. */
  close(): void;

  // The seed's service names; `userId` must be this client's own user (else `forbidden`).
  subscribeToSettingsChanges(
    callback: (settings: Settings, detail: ChangeDetail) => void,
  ): () => void;
  subscribeToSettingsChanges(
    userId: string,
    callback: (settings: Settings, detail: ChangeDetail) => void,
  ): () => void;
  onApiKeysUpdate(callback: (apiKeys: Settings["api_keys"]) => void): () => void;
  updateSettingsRealtime(settings: SettingsPatch): Promise<boolean>;
  updateSettingsRealtime(userId: string, settings: SettingsPatch): Promise<boolean>;
  getLatestSettings(userId?: string): Promise<Settings>;

  // Teams (as the token's user).
  listTeams(): Promise<Team[]>;
  createTeam(name: string): Promise<Team>;
  /** Owners only: the team, its document and its secrets go. */
  deleteTeam(teamId: string): Promise<void>;
  listMembers(teamId: string): Promise<Member[]>;
  setMember(teamId: string, change: MemberChange): Promise<Member[]>;
  removeMember(teamId: string, userId: string): Promise<void>;
  /** Rejects with `last_owner` for the team's last owner. */
  leaveTeam(teamId: string): Promise<void>;
  /** This client's team when `teamId` is left out. */
  effectiveSettings(teamId?: string): Promise<EffectiveSettings>;

  // The account (as the token's user).
  /**
   * Delete the account with its settings, secrets, history and sessions; `password` of a
   * built-in user, else the token must be from a recent sign-in (`reauthentication_required`).
   * Rejects with `wrong_password`, or `last_owner` (nothing deleted). Then forgets the cached
   * settings here and closes the client.
   */
  deleteAccount(options?: { password?: string | null }): Promise<void>;
  /** Everything the account holds, secrets masked (a JSON export for data portability). */
  exportAccount(): Promise<AccountExport>;
}

/** Whether `role` may write the field at `path` (null role: the user's own document). */
export declare function canWrite(role: TeamRole | null | undefined, path?: SettingsPath): WriteCheck;

/** The answer of a write: the new revision, the whole (masked) settings and any conflicts. */
export interface WriteResult {
  revision: number;
  settings: Settings;
  conflicts: unknown[];
}

export interface RealtimeSettingsServiceOptions {
  /** The server's origin. */
  url: string;
  /** A service token (`role: "service"`: any user) or a user's token (that user only), or a
   * function returning one (called again on reconnect and before expiry). */
  token: TokenSource;
  /** The WebSocket class where there is no global one (Node: `ws`); without any: SSE. */
  WebSocket?: WebSocketClass;
  /** "auto" (default: WebSocket when there is one, else SSE), "websocket" or "sse". */
  transport?: "auto" | "websocket" | "sse";
  /** The `X-Client-Id` of its writes (default: a random "svc-…"). */
  clientId?: string;
  requestTimeout?: number;
  heartbeatInterval?: number;
  heartbeatTimeout?: number;
  reconnectDelay?: number;
  maxReconnectDelay?: number;
  refreshLeadTime?: number;
}

/** The detail of a service's `error` event: what has no caller to reject. */
export interface ServiceErrorDetail {
  code: string;
  message: string;
  userId: string | null;
  error: unknown;
}

/** The seed's `realtimeSettingsService`, for backends. */
export declare class RealtimeSettingsService extends EventTarget {
  constructor(options: RealtimeSettingsServiceOptions);
  readonly url: string;
  readonly clientId: string;
  /** How changes arrive: "ws" or "sse". */
  readonly transport: "ws" | "sse";
  on(type: "error", callback: (detail: ServiceErrorDetail) => void): () => void;
  /**
   * `callback` gets the user's whole settings (masked): once when the subscription is in sync,
   * then after each change. Returns the cleanup function.
   */
  subscribeToSettingsChanges(
    userId: string,
    callback: (settings: Settings, detail: { userId: string; revision: number }) => void,
  ): () => void;
  updateSettingsRealtime(userId: string, settings: SettingsPatch): Promise<WriteResult>;
  getLatestSettings(userId: string): Promise<Settings>;
  /** Stop every subscription, timer and connection. */
  close(): void;
}

export declare function createRealtimeSettingsService(
  options: RealtimeSettingsServiceOptions,
): RealtimeSettingsService;

/** The top-level fields of a settings document. */
export declare const FIELDS: readonly [
  "theme",
  "language",
  "preferences",
  "ai_providers",
  "api_keys",
];
export declare function applyPatch<T extends object = Settings>(doc: T, patch: object): T;
/** The merge patch turning `before` into `after`. */
export declare function diffPatch(before: object, after: object): { [key: string]: Json };
export declare function getAt(doc: unknown, path: SettingsPath): Json | undefined;
export declare function parsePath(path: SettingsPath): string[];
export declare function toPointer(path: SettingsPath): string;
/** The claims of a JWT, read without checking it, or null. */
export declare function decodeJwt(token: string): { [claim: string]: Json } | null;
export declare const SESSION_KEY: "livesettings:session";
export declare const USER_KEY: "livesettings:user";
