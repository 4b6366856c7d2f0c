// The example app: a sign-in form, then the seed's settings page inside the provider.
//
// Options in the URL's fragment (never sent to a server): `server` (the livesettings origin;
// default this page's), `token` (an access token: skips the sign-in), `manual=1` (the page
// with manual saving and conflicts), `tokenAs=function` (the token given as an async
// function; the user is read from what it gives), `tokenAs=client` (a client made here, given
// as `client`), `doc=team:<id>` (the page of that team's document), `teams=1` (the teams
// page: a document switcher, create and leave), and the client timings `heartbeatInterval`, `heartbeatTimeout`, `reconnectDelay`,
// `maxReconnectDelay` (ms).
import { StrictMode, useEffect, useState } from "react";
import { createRoot } from "react-dom/client";
import { LiveSettings, decodeJwt } from "livesettings";
import { LiveSettingsProvider } from "livesettings-react";
import SettingsPage from "./settings-page.jsx";
import ManualSettingsPage from "./manual-page.jsx";
import TeamsPage from "./teams-page.jsx";

const params = new URLSearchParams(location.hash.slice(1));
const server = params.get("server") || location.origin;
const TIMINGS = ["heartbeatInterval", "heartbeatTimeout", "reconnectDelay", "maxReconnectDelay"];
const timings = Object.fromEntries(
  TIMINGS.filter((name) => params.has(name)).map((name) => [name, Number(params.get(name))]),
);

function SignIn({ onSession }) {
  const [error, setError] = useState(null);
  const submit = async (event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    setError(null);
    try {
      const session = await LiveSettings.signIn({
        url: server,
        username: String(form.get("username")),
        password: String(form.get("password")),
      });
      onSession(session);
    } catch (err) {
      setError(err.message);
    }
  };
  return (
    <form onSubmit={submit} aria-label="Sign in">
      <label htmlFor="username">Username</label> <input id="username" name="username" />{" "}
      <label htmlFor="password">Password</label>{" "}
      <input id="password" name="password" type="password" />{" "}
      <button type="submit">Sign in</button>
      {error && <p role="alert">{error}</p>}
    </form>
  );
}

function App() {
  const given = params.get("token");
  const [session, setSession] = useState(
    given ? { access_token: given, refresh_token: params.get("refreshToken") } : null,
  );
  if (!session) return <SignIn onSession={setSession} />;
  const Page = params.get("manual") === "1" ? ManualSettingsPage : SettingsPage;
  const tokenAs = params.get("tokenAs");
  if (tokenAs === "client") return <OwnClient session={session} Page={Page} />;
  const token =
    tokenAs === "function" ? async () => session.access_token : session.access_token;
  const providerProps = {
    url: server,
    token,
    userId: tokenAs === "function" ? undefined : decodeJwt(session.access_token)?.sub,
    refreshToken: session.refresh_token ?? undefined,
    fallback: <p>Connecting…</p>,
    ...timings,
  };
  if (params.get("teams") === "1") return <TeamsPage providerProps={providerProps} />;
  return (
    <LiveSettingsProvider {...providerProps} doc={params.get("doc") || null}>
      <Page />
    </LiveSettingsProvider>
  );
}

// A client made by the app and handed to the provider, which leaves it open: its owner
// closes it.
function OwnClient({ session, Page }) {
  const [client, setClient] = useState(null);
  useEffect(() => {
    const made = LiveSettings.fromSession(session, { url: server, ...timings });
    setClient(made);
    return () => made.close();
  }, [session]);
  if (!client) return <p>Connecting…</p>;
  return (
    <LiveSettingsProvider client={client}>
      <Page />
    </LiveSettingsProvider>
  );
}

createRoot(document.getElementById("root")).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
