// The seed's own Supabase code, as its apps write it: `createClient(url, anonKey)` and the
// realtime settings service over the `user_preferences` table. Only the URL and the anon key
// differ from a Supabase project's, plus what Node 20 needs: the `ws` WebSocket (Node < 22
// has none) and, to test both protocol versions, the realtime `vsn`.

import { createClient } from "@supabase/supabase-js";
import WebSocket from "ws";

import { ANON_KEY, URL, VSN } from "./helpers.mjs";

/** A Supabase client of the seed's app (one per tab or device). */
export function makeSupabase(options = {}) {
  return createClient(URL, ANON_KEY, {
    ...options,
    realtime: { transport: WebSocket, vsn: VSN, ...options.realtime },
  });
}

/** The seed's `realtimeSettingsService`, over one client. */
export function realtimeSettingsService(supabase) {
  return {
    subscribeToSettingsChanges(userId, callback, onStatus) {
      const channel = supabase
        .channel(`user_preferences:${userId}`)
        .on(
          "postgres_changes",
          {
            event: "UPDATE",
            schema: "public",
            table: "user_preferences",
            filter: `user_id=eq.${userId}`,
          },
          (payload) => callback(payload.new, payload),
        )
        .subscribe((status, err) => onStatus?.(status, err));
      return () => {
        supabase.removeChannel(channel);
      };
    },

    async updateSettingsRealtime(userId, settings) {
      const { data, error } = await supabase
        .from("user_preferences")
        .update({ ...settings, updated_at: new Date().toISOString() })
        .eq("user_id", userId)
        .select()
        .single();
      if (error) throw error;
      return data;
    },

    async getLatestSettings(userId) {
      const { data, error } = await supabase
        .from("user_preferences")
        .select("*")
        .eq("user_id", userId)
        .single();
      if (error && error.code !== "PGRST116") throw error;
      return data;
    },

    async saveSettings(userId, settings) {
      const { data, error } = await supabase
        .from("user_preferences")
        .upsert({ user_id: userId, ...settings }, { onConflict: "user_id" })
        .select()
        .single();
      if (error) throw error;
      return data;
    },
  };
}
