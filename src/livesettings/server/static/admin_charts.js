// The live charts of the admin page: the series of GET /v1/admin/stats kept for the last
// 15 minutes in the page (new points only, with ?since=), drawn by uPlot (vendor/, loaded as
// a classic script before the modules: it defines globalThis.uPlot).

const WINDOW_S = 15 * 60;
const MIN_SPAN_S = 60;
const HEIGHT = 170;
const COLOURS = ["#0b5fcc", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0e7490", "#a16207"];

/**
 * What each chart draws: `series` are [key of stats.series, legend label]; the errors chart
 * has one series per error code, as the server reports them.
 */
export const CHARTS = [
  {
    id: "connections",
    title: "Connections",
    about: "Open sockets on this node: WebSockets (also the Supabase-compatible one) and SSE streams.",
    unit: "",
    series: [
      ["ws_connections", "WebSocket"],
      ["sse_connections", "SSE"],
    ],
  },
  {
    id: "writes",
    title: "Writes per second",
    about: "Committed writes that made a new revision, per second, on this node.",
    unit: "/s",
    series: [["writes_per_s", "Writes/s"]],
  },
  {
    id: "conflicts",
    title: "Conflicts per second",
    about: "Conflicts reported to writers per second: a field changed concurrently elsewhere.",
    unit: "/s",
    series: [["conflicts_per_s", "Conflicts/s"]],
  },
  {
    id: "latency",
    title: "Write → push latency",
    about: "From commit to the change frame queued for a subscriber: median and 99th percentile.",
    unit: " ms",
    series: [
      ["push_p50_ms", "p50"],
      ["push_p99_ms", "p99"],
    ],
  },
  {
    id: "errors",
    title: "Errors by code",
    about: "Errors answered per second, one line per error code.",
    unit: "/s",
    series: null, // one per code of stats.series.errors_per_s
  },
  {
    id: "commit",
    title: "Group-commit size",
    about: "Mean writes per database transaction: writes arriving together share one commit.",
    unit: "",
    series: [["commit_size", "Writes per commit"]],
  },
];

function finite(value) {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

function formatValue(value, unit) {
  if (value == null) return "—";
  const rounded = Math.abs(value) >= 100 ? Math.round(value) : Math.round(value * 10) / 10;
  return `${rounded.toLocaleString("en")}${unit}`;
}

/** "11:42", or "11:42:05" with `withSeconds`, in the browser's time zone (unix seconds). */
function clockTime(seconds, withSeconds) {
  const date = new Date(seconds * 1000);
  const parts = [date.getHours(), date.getMinutes(), ...(withSeconds ? [date.getSeconds()] : [])];
  return parts.map((n) => String(n).padStart(2, "0")).join(":");
}

/** The time axis' labels: with seconds when its ticks are less than a minute apart. */
function timeLabels(_u, ticks) {
  const fine = ticks.length > 1 && ticks[1] - ticks[0] < 60;
  return ticks.map((t) => clockTime(t, fine));
}

/** The last 15 minutes of the stats series of one node, aligned on `t` (unix seconds). */
export class StatsSeries {
  constructor() {
    this.reset(null);
  }

  reset(nodeKey) {
    this.nodeKey = nodeKey;
    this.t = [];
    this.values = new Map(); // key of stats.series → array aligned on t
    this.errors = new Map(); // error code → array aligned on t
  }

  /** The `since` of the next request: the last second held, or null (everything). */
  get since() {
    return this.t.length ? this.t[this.t.length - 1] : null;
  }

  /** Append the points of a stats answer that are newer than those held. */
  add(stats) {
    const nodeKey = `${stats.node_id}@${stats.started_at}`;
    if (nodeKey !== this.nodeKey) this.reset(nodeKey); // another node, or a restart
    const series = stats.series ?? {};
    const times = Array.isArray(series.t) ? series.t : [];
    const last = this.since;
    const keys = CHARTS.flatMap((chart) => (chart.series ?? []).map(([key]) => key));
    const codes = series.errors_per_s && typeof series.errors_per_s === "object"
      ? Object.keys(series.errors_per_s)
      : [];
    for (const code of codes) {
      if (!this.errors.has(code)) this.errors.set(code, this.t.map(() => 0));
    }
    for (let i = 0; i < times.length; i += 1) {
      const t = finite(times[i]);
      if (t === null || (last !== null && t <= last)) continue; // held already
      this.t.push(t);
      for (const key of keys) {
        const column = this.values.get(key) ?? [];
        this.values.set(key, column);
        column.push(finite(series[key]?.[i]));
      }
      for (const [code, column] of this.errors) {
        column.push(finite(series.errors_per_s?.[code]?.[i]) ?? 0);
      }
    }
    this._trim(finite(stats.now) ?? this.since);
    // A code the server no longer reports goes once its last error left the window.
    for (const [code, column] of this.errors) {
      if (!codes.includes(code) && column.every((v) => !v)) this.errors.delete(code);
    }
  }

  _trim(now) {
    if (now === null) return;
    let drop = 0;
    while (drop < this.t.length && this.t[drop] < now - WINDOW_S) drop += 1;
    if (!drop) return;
    this.t.splice(0, drop);
    for (const column of [...this.values.values(), ...this.errors.values()]) column.splice(0, drop);
  }

  /** uPlot's data for `chart`: [t, ...one array per series], and the series' labels. */
  dataFor(chart) {
    if (chart.series) {
      const n = this.t.length;
      return {
        labels: chart.series.map(([, label]) => label),
        data: [
          this.t.slice(),
          ...chart.series.map(([key]) => (this.values.get(key) ?? new Array(n).fill(null)).slice()),
        ],
      };
    }
    const codes = [...this.errors.keys()].sort();
    return {
      labels: codes,
      data: [this.t.slice(), ...codes.map((code) => this.errors.get(code).slice())],
    };
  }
}

/** The uPlot charts of the page, one per figure of `CHARTS`, in `container`. */
export class Charts {
  constructor(container) {
    this.container = container;
    this.series = new StatsSeries();
    this.plots = new Map(); // chart id → {plot, labels, figure, latest}
    this._observer = new ResizeObserver(() => this._resize());
    for (const chart of CHARTS) this._figure(chart);
    this._observer.observe(container);
  }

  _figure(chart) {
    const figure = document.createElement("figure");
    figure.className = "chart";
    figure.id = `chart-${chart.id}`;
    figure.dataset.points = "0";
    const caption = document.createElement("figcaption");
    caption.id = `chart-${chart.id}-title`;
    const title = document.createElement("span");
    title.className = "chart-title";
    title.id = `chart-${chart.id}-name`;
    title.textContent = chart.title;
    const latest = document.createElement("span");
    latest.className = "chart-latest";
    latest.id = `chart-${chart.id}-latest`;
    latest.textContent = "no data yet";
    caption.append(title, " ", latest);
    const about = document.createElement("p");
    about.className = "hint chart-about";
    about.id = `chart-${chart.id}-about`;
    about.textContent = chart.about;
    const plot = document.createElement("div");
    plot.className = "chart-plot";
    // Named by its title alone (a stable name); the latest values and the words on what it
    // shows are its description.
    figure.setAttribute("aria-labelledby", title.id);
    figure.setAttribute("aria-describedby", `${about.id} ${latest.id}`);
    figure.append(caption, about, plot);
    this.container.append(figure);
    this.plots.set(chart.id, { chart, figure, latest, host: plot, plot: null, labels: null });
  }

  /** Take a stats answer and redraw every chart. */
  update(stats) {
    this.series.add(stats);
    const t = this.series.t;
    const end = t.length ? t[t.length - 1] : Date.now() / 1000;
    // The last 15 minutes; only as far back as the points go (a node up for less), but at
    // least a minute, so that a young node's few points are not a sliver at the edge.
    const start = Math.min(end - MIN_SPAN_S, Math.max(end - WINDOW_S, t.length ? t[0] : end));
    for (const entry of this.plots.values()) {
      const { labels, data } = this.series.dataFor(entry.chart);
      if (!entry.plot || entry.labels.join("\n") !== labels.join("\n")) this._create(entry, labels, data);
      entry.start = start;
      entry.end = end;
      entry.plot.setData(data);
      entry.figure.dataset.points = String(data[0].length);
      entry.latest.textContent = labels.length
        ? labels
            .map((label, i) => `${label} ${formatValue(data[i + 1].at(-1) ?? null, entry.chart.unit)}`)
            .join(", ")
        : "none";
    }
  }

  _create(entry, labels, data) {
    if (entry.plot) entry.plot.destroy();
    entry.labels = labels;
    const unit = entry.chart.unit;
    const options = {
      width: this._width(entry),
      height: HEIGHT,
      legend: { show: true, live: false },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: true, range: () => [entry.start ?? 0, entry.end ?? 0] },
        y: { range: (_u, min, max) => [0, Math.max(1, max ?? 0, min ?? 0)] },
      },
      axes: [
        { values: timeLabels },
        { size: 72, values: (_u, ticks) => ticks.map((v) => formatValue(v, unit)) },
      ],
      series: [
        {},
        ...labels.map((label, i) => ({
          label,
          stroke: COLOURS[i % COLOURS.length],
          width: 2,
          value: (_u, v) => formatValue(v, unit),
        })),
      ],
    };
    entry.plot = new globalThis.uPlot(options, data, entry.host);
  }

  _width(entry) {
    return Math.max(200, Math.floor(entry.host.clientWidth || entry.figure.clientWidth || 360));
  }

  _resize() {
    for (const entry of this.plots.values()) {
      if (entry.plot) entry.plot.setSize({ width: this._width(entry), height: HEIGHT });
    }
  }

  /** Read-only state for the console and the browser tests: each uPlot instance's data. */
  snapshot() {
    const out = {};
    for (const [id, entry] of this.plots) {
      const data = entry.plot ? entry.plot.data : [[]];
      out[id] = {
        points: data[0].length,
        labels: entry.labels ? entry.labels.slice() : [],
        series: Object.fromEntries(
          (entry.labels ?? []).map((label, i) => [label, Array.from(data[i + 1] ?? [])]),
        ),
      };
    }
    return out;
  }

  destroy() {
    this._observer.disconnect();
    for (const entry of this.plots.values()) entry.plot?.destroy();
    this.plots.clear();
    this.container.replaceChildren();
  }
}
