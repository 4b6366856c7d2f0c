// Types of livesettings-react. The settings, status and client types are livesettings'.

import type { ComponentType, Context, CSSProperties, ReactNode } from "react";
import type {
  Conflict,
  LiveSettings,
  LiveSettingsOptions,
  MaskedSecret,
  Settings,
  SettingsPatch,
  SyncStatus,
  Team,
  TeamRole,
} from "livesettings";

export { canWrite } from "livesettings";

export type {
  Conflict,
  ConnectionState,
  LiveSettings,
  LiveSettingsError,
  LiveSettingsOptions,
  MaskedSecret,
  Settings,
  SettingsPatch,
  SyncStatus,
  Team,
  TeamDoc,
  TeamRole,
  WriteCheck,
} from "livesettings";

/** The props of `<LiveSettingsProvider>`: an existing `client`, or the options of a new one. */
export type LiveSettingsProviderProps = (
  | ({ client: LiveSettings } & { [K in keyof LiveSettingsOptions]?: never })
  | ({ client?: undefined } & LiveSettingsOptions)
) & {
  /** Rendered until the client exists (the first commit). */
  fallback?: ReactNode;
  children?: ReactNode;
};

/**
 * Provides one LiveSettings client to the hooks and components below it. `doc`
 * ("team:<team_id>") follows a team's document instead of the user's own; the client is made
 * again when it changes.
 */
export declare const LiveSettingsProvider: ComponentType<LiveSettingsProviderProps>;

/** The client of the nearest provider (null outside one). */
export declare const LiveSettingsContext: Context<LiveSettings | null>;

/** The client of the nearest `<LiveSettingsProvider>`; throws outside one. */
export declare function useLiveSettings(): LiveSettings;

/** A merge patch, or a function of the current settings returning the next ones. */
export type SettingsUpdate = SettingsPatch | ((previous: Settings) => Settings | null | undefined);

/** Edits the settings at once (optimistic); throws a LiveSettingsError it cannot make. */
export type UpdateSettings = (update: SettingsUpdate) => void;

export declare function useModelSettings(): {
  settings: Settings;
  updateSettings: UpdateSettings;
};

/** A conflict as `useSettingsSync` keeps it: the client's, with an id to dismiss it by. */
export type SyncConflict = Conflict & { id: string };

export interface SettingsSyncOptions {
  /** Save edits after `autoSaveDelay` (default true); false: only `syncSettings()` saves. */
  autoSave?: boolean;
  /** Milliseconds after the last edit (default 1500). */
  autoSaveDelay?: number;
  /** Called with each conflict as it arrives. */
  onConflict?: (conflict: SyncConflict) => void;
}

export interface SettingsSync {
  isSyncing: boolean;
  hasUnsavedChanges: boolean;
  /** A human sentence, or null. */
  syncError: string | null;
  lastSyncTime: Date | null;
  /** Sends every pending edit; resolves once they are saved (or refused). */
  syncSettings: () => Promise<boolean>;
  /** Reloads the settings from the server; resolves with them (null when it failed). */
  forceSyncFromDatabase: () => Promise<Settings | null>;
  conflicts: SyncConflict[];
  dismissConflict: (conflict: string | SyncConflict) => void;
}

export declare function useSettingsSync(
  settings?: Settings,
  updateSettings?: UpdateSettings,
  options?: SettingsSyncOptions,
): SettingsSync;

export interface RealtimeSettingsOptions {
  /** Every change made elsewhere: another tab, device or backend, or a reload. */
  onSettingsUpdate?: (settings: Settings) => void;
  /** Every change of the masked API keys. */
  onApiKeysUpdate?: (apiKeys: Record<string, MaskedSecret>) => void;
}

/** Subscribes for the component's lifetime; returns the function that stops it earlier. */
export declare function useRealtimeSettings(options?: RealtimeSettingsOptions): () => void;

/** The client's status object, re-rendering on each change of it. */
export declare function useSyncStatus(): SyncStatus;

/** A message as a sentence (capital letter, full stop); null for an empty one. */
export declare function asSentence(message: string | null | undefined): string | null;

export type IndicatorState = "synced" | "syncing" | "unsaved" | "offline" | "error";

export declare const STATE_COLOURS: Readonly<Record<IndicatorState, string>>;

export declare function describeStatus(status: SyncStatus): {
  state: IndicatorState;
  label: string;
};

export interface RealtimeStatusIndicatorProps {
  className?: string;
  style?: CSSProperties;
  /** Show the time of the last sync (default true). */
  showLastSync?: boolean;
}

/** "Synced", "Saving…", "Unsaved changes", "Offline" or "Error: …", with a coloured dot. */
export declare const RealtimeStatusIndicator: ComponentType<RealtimeStatusIndicatorProps>;

/** A JSON Schema for `preferences` (the subset the form draws: properties, type, enum, …). */
export interface PreferencesSchema {
  type?: string | string[];
  title?: string;
  properties?: Record<string, PreferencesSchema>;
  enum?: unknown[];
  default?: unknown;
  [keyword: string]: unknown;
}

export interface SettingsFormProps {
  settings: Settings;
  /** Receives merge patches; `updateSettings` of useModelSettings fits. */
  onChange: (patch: SettingsPatch) => unknown;
  /** Left out: fetched from the provider's server (GET /v1/schema); null: the JSON editor. */
  schema?: PreferencesSchema | null;
  /** The AI providers offered, as [id, name] pairs. */
  providers?: ReadonlyArray<readonly [string, string]>;
  disabled?: boolean;
  className?: string;
  style?: CSSProperties;
}

export declare const SettingsForm: ComponentType<SettingsFormProps>;

export declare const PROVIDERS: ReadonlyArray<readonly [string, string]>;
export declare const THEMES: ReadonlyArray<readonly [Settings["theme"], string]>;

/** Words for a masked key: "Saved key ending in x9Qz", "Saved key" or "Not set". */
export declare function describeKey(masked: MaskedSecret | null | undefined): string;

/**
 * The user's role in the provider's team document, re-rendering when it becomes known or
 * changes; null for the user's own document, before it is known, and once removed.
 */
export declare function useRole(): TeamRole | null;

/** The provider's user's teams, and the changes a user makes to them. */
export interface TeamsState {
  teams: Team[];
  loading: boolean;
  /** The last failure of a load (a LiveSettingsError), or null. */
  error: Error | null;
  /** Loads the list again; resolves with it. */
  refresh: () => Promise<Team[]>;
  /** Creates a team (the user is its owner), then reloads the list. */
  createTeam: (name: string) => Promise<Team>;
  /** Owners only; then reloads the list. */
  deleteTeam: (teamId: string) => Promise<void>;
  /** Rejects with `last_owner` for the last owner; then reloads the list. */
  leaveTeam: (teamId: string) => Promise<void>;
}

/** The teams of the provider's user, loaded on mount and after each change. */
export declare function useTeams(): TeamsState;
