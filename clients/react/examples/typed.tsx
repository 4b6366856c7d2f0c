// A typed page: the seed's hooks and components with the package's types. Checked by
// `npx tsc --noEmit -p clients/react` (nothing is emitted).
import { useState } from "react";
import type { Settings, SyncStatus, Team, TeamRole } from "livesettings";
import {
  LiveSettingsProvider,
  RealtimeStatusIndicator,
  SettingsForm,
  canWrite,
  describeStatus,
  useModelSettings,
  useRealtimeSettings,
  useRole,
  useSettingsSync,
  useSyncStatus,
  useTeams,
  type SyncConflict,
  type TeamsState,
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

// Teams: a switcher over useTeams, and the team's document through the same hooks.
function TeamSwitcher({ onPick }: { onPick: (teamId: string | null) => void }) {
  const { teams, loading, error, refresh, createTeam, deleteTeam, leaveTeam }: TeamsState =
    useTeams();
  const [problem, setProblem] = useState<string | null>(null);
  const leave = (team: Team) =>
    leaveTeam(team.team_id).catch((err: { code?: string }) => setProblem(err.code ?? "error"));
  if (loading && !teams.length) return <p>Loading teams…</p>;
  return (
    <div>
      {error && <p role="alert">{error.message}</p>}
      {problem && <p role="alert">{problem}</p>}
      <button onClick={() => onPick(null)}>Personal</button>
      {teams.map((team) => (
        <span key={team.team_id}>
          <button onClick={() => onPick(team.team_id)}>
            {team.name} ({team.role})
          </button>
          <button onClick={() => void leave(team)}>Leave</button>
          {team.role === "owner" && (
            <button onClick={() => void deleteTeam(team.team_id)}>Delete</button>
          )}
        </span>
      ))}
      <button onClick={() => void createTeam("Design").then((t: Team) => onPick(t.team_id))}>
        Create team
      </button>
      <button onClick={() => void refresh()}>Reload</button>
    </div>
  );
}

function TeamTheme() {
  const role: TeamRole | null = useRole();
  const { settings, updateSettings } = useModelSettings();
  const check = canWrite(role, "/theme");
  return (
    <button
      disabled={!check.ok}
      title={check.reason}
      onClick={() => updateSettings({ theme: settings.theme === "dark" ? "light" : "dark" })}
    >
      Team theme: {settings.theme}
    </button>
  );
}

export function TeamsApp({ url, token }: { url: string; token: string }) {
  const [teamId, setTeamId] = useState<string | null>(null);
  return (
    <LiveSettingsProvider url={url} token={token}>
      <TeamSwitcher onPick={setTeamId} />
      <LiveSettingsProvider url={url} token={token} doc={teamId ? `team:${teamId}` : null}>
        <TeamTheme />
      </LiveSettingsProvider>
    </LiveSettingsProvider>
  );
}
