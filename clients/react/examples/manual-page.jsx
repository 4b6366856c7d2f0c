// The seed's page with manual saving (autoSave: false), the conflicts of useSettingsSync and
// the remote updates told by useRealtimeSettings.
import { useState } from "react";
import {
  RealtimeStatusIndicator,
  SettingsForm,
  useModelSettings,
  useRealtimeSettings,
  useSettingsSync,
} from "livesettings-react";

function describeConflict(conflict) {
  const mine = conflict.mine === undefined ? "your value" : `your ${JSON.stringify(conflict.mine)}`;
  return conflict.lost
    ? `Conflict on ${conflict.path}: ${mine} lost to ${JSON.stringify(conflict.winner)}.`
    : `Conflict on ${conflict.path}: ${mine} overwrote a concurrent change.`;
}

export default function ManualSettingsPage() {
  const { settings, updateSettings } = useModelSettings();
  const [remoteUpdates, setRemoteUpdates] = useState(0);
  const [keyNames, setKeyNames] = useState(null);
  const {
    isSyncing,
    hasUnsavedChanges,
    syncError,
    lastSyncTime,
    syncSettings,
    forceSyncFromDatabase,
    conflicts,
    dismissConflict,
  } = useSettingsSync(settings, updateSettings, { autoSave: false });

  useRealtimeSettings({
    onSettingsUpdate: () => setRemoteUpdates((n) => n + 1),
    onApiKeysUpdate: (apiKeys) => setKeyNames(Object.keys(apiKeys).sort().join(", ")),
  });

  return (
    <div>
      <RealtimeStatusIndicator />
      <SettingsForm settings={settings} onChange={updateSettings} />
      <ul aria-label="Conflicts">
        {conflicts.map((conflict) => (
          <li key={conflict.id} className="conflict">
            {describeConflict(conflict)}{" "}
            <button onClick={() => dismissConflict(conflict.id)}>Dismiss</button>
          </li>
        ))}
      </ul>
      <p data-testid="remote-updates">Remote updates: {remoteUpdates}</p>
      <p data-testid="api-key-names">API keys: {keyNames ?? "(unchanged)"}</p>
      {isSyncing && <div>Syncing...</div>}
      {hasUnsavedChanges && <div>Unsaved changes</div>}
      {syncError && <div>Error: {syncError}</div>}
      {lastSyncTime && <div>Last sync: {lastSyncTime.toISOString()}</div>}
      <button onClick={syncSettings}>Save Now</button>
      <button onClick={forceSyncFromDatabase}>Refresh</button>
    </div>
  );
}
