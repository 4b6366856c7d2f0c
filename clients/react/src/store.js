// A snapshot store over one LiveSettings client, for React's useSyncExternalStore: the
// client's `settings` and `status` getters return fresh copies, so the store keeps the last
// ones it was told about and returns the same objects until the next event.

/** @type {WeakMap<object, ClientStore>} */
const stores = new WeakMap();

const REMOTE_SOURCES = new Set(["server", "tab", "refresh", "adopted"]);

/** Whether a `change` event's source is someone else's edit (not this tab's own). */
export function isRemoteSource(source) {
  return REMOTE_SOURCES.has(source);
}

class ClientStore {
  constructor(client) {
    this.client = client;
    this.settings = client.settings;
    this.status = client.status;
    this.listeners = new Set();
    this.unsubscribe = null;
  }

  subscribe = (listener) => {
    this.listeners.add(listener);
    if (this.listeners.size === 1) this._start();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this._stop();
    };
  };

  getSettings = () => this.settings;

  getStatus = () => this.status;

  _start() {
    // Events may have passed while nobody listened: take the current values first.
    const settings = this.client.settings;
    const status = this.client.status;
    if (JSON.stringify(settings) !== JSON.stringify(this.settings)) this.settings = settings;
    if (JSON.stringify(status) !== JSON.stringify(this.status)) this.status = status;
    const offChange = this.client.on("change", (detail) => {
      this.settings = detail.settings;
      this._notify();
    });
    const offStatus = this.client.on("status", (detail) => {
      this.status = detail;
      this._notify();
    });
    this.unsubscribe = () => {
      offChange();
      offStatus();
    };
  }

  _stop() {
    if (this.unsubscribe) this.unsubscribe();
    this.unsubscribe = null;
  }

  _notify() {
    for (const listener of [...this.listeners]) listener();
  }
}

/** The one store of `client` (created on first use). */
export function storeOf(client) {
  let store = stores.get(client);
  if (!store) {
    store = new ClientStore(client);
    stores.set(client, store);
  }
  return store;
}
