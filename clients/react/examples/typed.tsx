// A typed page: the seed's hooks and components with the package's types. Checked by
// `npx tsc --noEmit -p clients/react` (nothing is emitted).
import { useState } from "react";
import type { Settings, SyncStatus } from "livesettings";
import {
  LiveSettingsProvider,
  RealtimeStatusIndicator,
  SettingsForm,
  describeStatus,
  useModelSettings,
  useRealtimeSettings,
  useSettingsSync,
  useSyncStatus,
  type SyncConflict,
} from "livesettings-react";

function ThemeToggle() {
  const { settings, updateSettings } = useModelSettings();
  const next: Settings["theme"] = settings.theme === "dark" ? "light" : "dark";
  return (
    <>
      <button onClick={() => updateSettings({ theme: next })}>Theme: {settings.theme}</button>
      <button
        onClick={() =>
          updateSettings((prev) => ({
            ...prev,
            ai_providers: { ...prev.ai_providers, default: "openai" },
          }))
        }
      >
        Use OpenAI
      </button>
    </>
  );
}

function StatusLine() {
  const status: SyncStatus = useSyncStatus();
  const { state, label } = describeStatus(status);
  return (
    <p data-state={state}>
      {label} ({status.connection}, {status.unsaved} unsaved)
    </p>
  );
}

function TypedSettingsPage() {
  const { settings, updateSettings } = useModelSettings();
  const [lastConflict, setLastConflict] = useState<SyncConflict | null>(null);
  const [keyNames, setKeyNames] = useState<string[]>([]);
  const sync = useSettingsSync(settings, updateSettings, {
    autoSave: false,
    autoSaveDelay: 500,
    onConflict: (conflict) => setLastConflict(conflict),
  });
  const stop: () => void = useRealtimeSettings({
    onSettingsUpdate: (next: Settings) => console.log("remote theme", next.theme),
    onApiKeysUpdate: (apiKeys) => setKeyNames(Object.keys(apiKeys)),
  });
  const save = async () => {
    const saved: boolean = await sync.syncSettings();
    if (!saved) console.log("not saved: the client was closed");
  };
  const lastSync: Date | null = sync.lastSyncTime;

  return (
    <div>
      <RealtimeStatusIndicator showLastSync style={{ fontWeight: "bold" }} />
      <StatusLine />
      <ThemeToggle />
      <SettingsForm settings={settings} onChange={updateSettings} schema={null} />
      {sync.syncError !== null && <div role="alert">{sync.syncError}</div>}
      {sync.conflicts.map((conflict) => (
        <button key={conflict.id} onClick={() => sync.dismissConflict(conflict)}>
          {conflict.path}
        </button>
      ))}
      {lastConflict && <p>Last conflict: {lastConflict.path}</p>}
      <p>Keys: {keyNames.join(", ")}</p>
      <p>Last sync: {lastSync ? lastSync.toISOString() : "never"}</p>
      <button onClick={() => void save()}>Save Now</button>
      <button onClick={() => void sync.forceSyncFromDatabase()}>Refresh</button>
      <button onClick={stop}>Stop listening</button>
    </div>
  );
}

export function App({ url, getToken }: { url: string; getToken: () => Promise<string> }) {
  return (
    <LiveSettingsProvider url={url} token={getToken} userId="user-1" autoSaveDelay={800}>
      <TypedSettingsPage />
    </LiveSettingsProvider>
  );
}
