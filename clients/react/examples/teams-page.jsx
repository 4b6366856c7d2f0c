// The example's teams page (`teams=1`): a document switcher over useTeams ("Personal" and
// each team, "Create team", "Leave"), and the chosen document in a second provider with
// `doc`, whose controls follow the user's role (useRole, canWrite) with the reason shown.
import { useState } from "react";
import {
  LiveSettingsProvider,
  RealtimeStatusIndicator,
  SettingsForm,
  canWrite,
  useModelSettings,
  useRole,
  useTeams,
} from "livesettings-react";

function Switcher({ doc, onPick }) {
  const { teams, loading, error, createTeam, leaveTeam } = useTeams();
  const [name, setName] = useState("");
  const [problem, setProblem] = useState(null);
  const act = (promise) =>
    promise.then(
      () => setProblem(null),
      (err) => setProblem(`${err.code}: ${err.message}`),
    );
  const create = (event) => {
    event.preventDefault();
    act(createTeam(name).then((team) => onPick(`team:${team.team_id}`)));
  };
  const leave = (team) =>
    act(
      leaveTeam(team.team_id).then(() => {
        if (doc === `team:${team.team_id}`) onPick(null);
      }),
    );
  return (
    <nav aria-label="Documents" data-loading={loading ? "true" : "false"}>
      <button aria-pressed={doc === null} onClick={() => onPick(null)}>
        Personal
      </button>
      <ul aria-label="Teams">
        {teams.map((team) => (
          <li key={team.team_id} data-team={team.team_id}>
            <button
              aria-pressed={doc === `team:${team.team_id}`}
              onClick={() => onPick(`team:${team.team_id}`)}
            >
              {team.name} ({team.role})
            </button>{" "}
            <button onClick={() => leave(team)}>Leave {team.name}</button>
          </li>
        ))}
      </ul>
      <form onSubmit={create} aria-label="Create team">
        <label htmlFor="team-name">Team name</label>{" "}
        <input id="team-name" value={name} onChange={(e) => setName(e.target.value)} />{" "}
        <button type="submit">Create team</button>
      </form>
      {error && <p role="alert">{error.message}</p>}
      {problem && <p role="alert">{problem}</p>}
    </nav>
  );
}

function Document({ doc }) {
  const role = useRole();
  const { settings, updateSettings } = useModelSettings();
  const write = canWrite(role, "/theme");
  const keys = canWrite(role, "/api_keys");
  const reason = !write.ok ? write.reason : !keys.ok ? keys.reason : null;
  return (
    <section aria-label={doc ? "Team settings" : "Personal settings"}>
      {doc && <p data-part="role">Your role: {role ?? "…"}</p>}
      {reason && <p data-part="reason">{reason}</p>}
      <RealtimeStatusIndicator />
      <SettingsForm
        settings={settings}
        onChange={updateSettings}
        schema={null}
        disabled={!write.ok}
      />
    </section>
  );
}

export default function TeamsPage({ providerProps }) {
  const [doc, setDoc] = useState(null);
  return (
    <LiveSettingsProvider {...providerProps}>
      <Switcher doc={doc} onPick={setDoc} />
      <LiveSettingsProvider {...providerProps} doc={doc}>
        <Document doc={doc} />
      </LiveSettingsProvider>
    </LiveSettingsProvider>
  );
}
