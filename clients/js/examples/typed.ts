// A typed Node backend: LiveSettings over the `ws` WebSocket, and the seed's
// realtimeSettingsService with a service token. Checked by `npx tsc --noEmit -p clients/js`
// (nothing is emitted or run).
import WebSocket from "ws";
import {
  LiveSettings,
  LiveSettingsError,
  canWrite,
  createRealtimeSettingsService,
  type Conflict,
  type ConnectionState,
  type EffectiveSettings,
  type Member,
  type MembershipDetail,
  type Team,
  type TeamRole,
  type LiveSettingsOptions,
  type MaskedSecret,
  type RealtimeSettingsService,
  type RealtimeSettingsServiceOptions,
  type Settings,
  type SettingsPatch,
  type SyncStatus,
} from "livesettings";

const url = process.env.LIVESETTINGS_URL ?? "http://127.0.0.1:8000";

// One user's live settings in a backend process (its own token, renewed by a function).
const options: LiveSettingsOptions = {
  url,
  token: async () => process.env.USER_TOKEN ?? "",
  userId: "user-1",
  WebSocket,
  autoSaveDelay: null,
};
const client = new LiveSettings(options);
client.on("change", ({ settings, source }) => {
  const theme: Settings["theme"] = settings.theme;
  console.log(source, theme, settings.ai_providers);
});
client.on("conflict", (conflict: Conflict) => console.log(conflict.path, conflict.lost));
client.on("status", (status: SyncStatus) => {
  const state: ConnectionState = status.connection;
  console.log(state, status.unsaved, status.lastSyncAt);
});
client.onApiKeysUpdate((keys) => {
  const openai: MaskedSecret | undefined = keys.openai;
  console.log(openai?.last4 ?? "no key");
});

async function useClient(): Promise<void> {
  await client.ready;
  client.set("/ai_providers/openai/model", "gpt-4o");
  const patch: SettingsPatch = { theme: "dark", api_keys: { openai: "sk-…" } };
  await client.updateSettingsRealtime("user-1", patch);
  const latest: Settings = await client.getLatestSettings();
  console.log(latest.language);
  client.close();
}

// The backend service: one socket follows many users (a service token).
const serviceOptions: RealtimeSettingsServiceOptions = {
  url,
  token: process.env.SERVICE_TOKEN ?? "",
  WebSocket,
};
const service: RealtimeSettingsService = createRealtimeSettingsService(serviceOptions);
service.on("error", ({ code, userId }) => console.error(code, userId));

async function useService(userIds: string[]): Promise<void> {
  const cleanups = userIds.map((userId) =>
    service.subscribeToSettingsChanges(userId, (settings, { revision }) => {
      console.log(userId, revision, settings.theme);
    }),
  );
  try {
    const result = await service.updateSettingsRealtime(userIds[0], { language: "fr" });
    console.log(result.revision, result.settings.language);
    const settings: Settings = await service.getLatestSettings(userIds[0]);
    console.log(settings.preferences);
  } catch (err) {
    if (err instanceof LiveSettingsError) console.error(err.code, err.message);
  } finally {
    cleanups.forEach((cleanup) => cleanup());
    service.close();
  }
}

void useClient();
void useService(["user-1", "user-2"]);

// A team's document: the same client, with `doc`; the team methods act as the token's user.
async function useTeam(): Promise<void> {
  const personal = new LiveSettings({ url, token: process.env.USER_TOKEN ?? "", WebSocket });
  const created: Team = await personal.createTeam("Design");
  const members: Member[] = await personal.setMember(created.team_id, {
    username: "bob",
    role: "member",
  });
  console.log(members.map((m) => `${m.username ?? m.user_id}: ${m.role}`));
  const teams: Team[] = await personal.listTeams();
  const team = new LiveSettings({
    url,
    token: process.env.USER_TOKEN ?? "",
    WebSocket,
    doc: `team:${teams[0].team_id}`,
  });
  team.on("membership", ({ doc, role }: MembershipDetail) => console.log(doc, role ?? "removed"));
  await team.ready;
  const role: TeamRole | null = team.role;
  const check = canWrite(role, "/api_keys/openai");
  if (check.ok) team.set("/api_keys/openai", "sk-…");
  else console.log(check.reason);
  const effective: EffectiveSettings = await team.effectiveSettings();
  console.log(team.doc, effective.team_revision, effective.settings.theme);
  await personal.leaveTeam(created.team_id).catch((err: LiveSettingsError) => err.code);
  team.close();
  personal.close();
}
void useTeam();
