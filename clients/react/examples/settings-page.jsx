import {
  RealtimeStatusIndicator,
  SettingsForm,
  useModelSettings,
  useSettingsSync,
} from "livesettings-react";

export default function SettingsPage() {
  const { settings, updateSettings } = useModelSettings();
  
  const {
    isSyncing,
    hasUnsavedChanges,
    syncError,
    syncSettings,
    forceSyncFromDatabase
  } = useSettingsSync(settings, updateSettings, {
    autoSave: true,
    autoSaveDelay: 1500
  });

  return (
    <div>
      <RealtimeStatusIndicator />
      
      {/* Settings form */}
      <SettingsForm 
        settings={settings}
        onChange={updateSettings}
      />
      
      {/* Sync status */}
      {isSyncing && <div>Syncing...</div>}
      {hasUnsavedChanges && <div>Unsaved changes</div>}
      {syncError && <div>Error: {syncError}</div>}
      
      {/* Manual controls */}
      <button onClick={syncSettings}>Save Now</button>
      <button onClick={forceSyncFromDatabase}>Refresh</button>
    </div>
  );
}
