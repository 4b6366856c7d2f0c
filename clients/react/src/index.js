// livesettings-react: React bindings for livesettings with the names of the realtime
// settings guide. Plain ES modules (React.createElement, no JSX): no build step.
//
//   <LiveSettingsProvider url={url} token={token}>
//     <SettingsPage />   // useModelSettings, useSettingsSync, RealtimeStatusIndicator, …
//   </LiveSettingsProvider>
//   <LiveSettingsProvider url={url} token={token} doc={`team:${teamId}`}>  // a team's
//     <TeamPage />       // the same hooks, plus useRole and useTeams
//   </LiveSettingsProvider>

export { LiveSettingsContext, LiveSettingsProvider, useLiveSettings } from "./context.js";
export {
  asSentence,
  useModelSettings,
  useRealtimeSettings,
  useSettingsSync,
  useSyncStatus,
} from "./hooks.js";
export { RealtimeStatusIndicator, STATE_COLOURS, describeStatus } from "./status-indicator.js";
export { PROVIDERS, SettingsForm, THEMES } from "./settings-form.js";
export { describeKey } from "./api-keys.js";
export { useRole, useTeams } from "./teams.js";
export { canWrite } from "livesettings";
