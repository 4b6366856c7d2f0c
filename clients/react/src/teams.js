// Teams (DESIGN §11): useTeams, the caller's teams over the client's team methods, and
// useRole, the user's role in the team document of the nearest provider (`doc`).

import { useCallback, useEffect, useRef, useState, useSyncExternalStore } from "react";
import { useLiveSettings } from "./context.js";

/**
 * The user's role in the provider's team document ("owner", "admin", "member", "viewer"),
 * re-rendering when it becomes known or changes; null for the user's own document, before
 * it is known, and once the user was removed from the team.
 */
export function useRole() {
  const client = useLiveSettings();
  const subscribe = useCallback((onChange) => client.on("membership", onChange), [client]);
  const read = () => client.role;
  return useSyncExternalStore(subscribe, read, read);
}

/**
 * `{teams, loading, error, refresh, createTeam, deleteTeam, leaveTeam}`: the teams of the
 * provider's user, each `{team_id, name, role, created_at}`, loaded on mount and again after
 * each change made here and each `membership` event of the client. The functions return
 * the client's promises (they reject with its LiveSettingsError, e.g. `last_owner`) and
 * reload the list once they are done; `error` holds the last failure of a load.
 */
export function useTeams() {
  const client = useLiveSettings();
  const [state, setState] = useState({ teams: [], loading: true, error: null });
  const latest = useRef(0);

  const refresh = useCallback(async () => {
    const ask = (latest.current += 1);
    setState((current) => (current.loading ? current : { ...current, loading: true }));
    try {
      const teams = await client.listTeams();
      if (ask === latest.current) setState({ teams, loading: false, error: null });
      return teams;
    } catch (error) {
      if (ask === latest.current) setState((current) => ({ ...current, loading: false, error }));
      throw error;
    }
  }, [client]);

  useEffect(() => {
    const load = () => refresh().catch(() => {}); // kept in `error`
    load();
    const off = client.on("membership", load);
    return () => {
      latest.current += 1; // an answer after unmount or for another client is dropped
      off();
    };
  }, [client, refresh]);

  const after = useCallback(
    async (action) => {
      try {
        return await action();
      } finally {
        refresh().catch(() => {});
      }
    },
    [refresh],
  );
  const createTeam = useCallback((name) => after(() => client.createTeam(name)), [after, client]);
  const deleteTeam = useCallback((id) => after(() => client.deleteTeam(id)), [after, client]);
  const leaveTeam = useCallback((id) => after(() => client.leaveTeam(id)), [after, client]);

  return { ...state, refresh, createTeam, deleteTeam, leaveTeam };
}
