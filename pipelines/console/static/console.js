// marketstream console: each page asks the JSON API and writes what it answers as text (textContent, never
// innerHTML), so nothing read from Kafka or the lake can become markup. No network access but the console's own.
"use strict";

const main = document.getElementById("main");
const stateLine = document.getElementById("state");
const PAGE = document.body.dataset.page;
const POLL_MS = 500;
const NEWS_POLL_MS = 5000;  // news and signals change far less often than bars

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "class") node.className = value;
    else if (name.startsWith("data-")) node.setAttribute(name, value);
    else node[name] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function table(headers, rows, attrs) {
  return el("table", attrs || {},
    el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", {}, c))))));
}

const fmt = new Intl.NumberFormat("en-US");
function number(value) { return value === null || value === undefined ? "unknown" : fmt.format(value); }
function age(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["min", 60]]) {
    if (Math.abs(seconds) >= size) return `${(seconds / size).toFixed(1)} ${unit} ago`;
  }
  return `${Math.round(seconds)} s ago`;
}

function rendered() {  // the first render of the page's data: measured by the browser tests
  if (!document.body.dataset.rendered) document.body.dataset.rendered = String(Math.round(performance.now()));
}

async function api(path, options) {
  const response = await fetch(path, options);
  let body = null;
  try { body = await response.json(); } catch (e) { body = { error: `${response.status} ${response.statusText}` }; }
  if (!response.ok) throw new Error(body && body.error ? body.error : `${response.status}`);
  return body;
}

function problem(text) { return el("p", { class: "problem", "data-problem": "" }, text); }

// --- Overview
function tableLine(t) {
  if (t.version === null) return el("li", {}, `table ${t.name} (${t.uri}): none yet`);
  return el("li", { "data-table": t.name },
    `table ${t.name} (${t.uri}): version ${t.version}, ${number(t.files)} files, ${number(t.rows)} rows, `,
    el("span", { class: "compaction" }, `${number(t.files_awaiting_compaction)} awaiting compaction`),
    `, last commit ${age(t.last_commit_age_s)}`);
}

function datasetCard(s) {
  const lagKnown = s.lag_messages !== null;
  const card = el("section", { class: "card" + (s.unread ? " unread" : ""), "data-dataset": s.dataset },
    el("h2", {}, s.dataset, " ", el("small", {}, `topic ${s.topic}`)));
  const topic = s.topic_exists === null ? "unknown" : s.topic_exists ? `${number(s.messages)} messages` : "does not exist yet";
  card.append(el("dl", {},
    el("dt", {}, "topic"), el("dd", { "data-field": "messages" }, topic),
    el("dt", {}, "lag"), el("dd", { "data-field": "lag", class: lagKnown && s.lag_messages > 0 ? "behind" : "" },
      lagKnown ? `${number(s.lag_messages)} messages` : "unknown", " · ",
      s.lag_seconds === null ? "unknown" : `${s.lag_seconds} s`),
    el("dt", {}, "freshness"), el("dd", { "data-field": "freshness" },
      s.messages === 0 ? "no message yet" : s.last_message ? `last message ${age(s.last_message_age_s)}` : "unknown"),
    el("dt", {}, "dead letters"), el("dd", { "data-field": "dead-letters" }, number(s.dead_letters))));
  if (s.top_reasons.length) {
    card.append(el("ul", { class: "reasons" }, ...s.top_reasons.map(([reason, count]) =>
      el("li", {}, `${number(count)} × `, el("span", { class: "reason" }, reason)))));
  }
  card.append(el("ul", { class: "tables" }, ...s.tables.map(tableLine)));
  if (s.unread) card.append(problem(`not read from Kafka: ${s.unread}`));
  return card;
}

function derivedCard(d) {
  const behind = d.behind_seconds !== null ? `${d.behind_seconds} s` : d.newest_held ? "unknown" : "no trade held yet";
  return el("section", { class: "card", "data-dataset": d.name },
    el("h2", {}, d.name, " ", el("small", {}, `computed from ${d.derived_from}'s topic`)),
    el("dl", {}, el("dt", {}, "behind"), el("dd", { "data-field": "behind" }, behind,
      d.newest_held ? ` · newest trade held ${d.newest_held}` : "")),
    el("ul", { class: "tables" }, ...d.tables.map(tableLine)));
}

async function overview() {
  const header = el("p", { class: "meta" });
  const alerts = el("div");
  const grid = el("div", { class: "grid" });
  main.append(el("h1", {}, "Overview"), header, alerts, grid);
  async function refresh() {
    try {
      const o = await api("/api/overview");
      alerts.replaceChildren();
      if (o.error) alerts.append(problem(o.error));
      if (o.kafka_unreachable) alerts.append(el("p", { class: "problem", id: "kafka-state" }, "Kafka unreachable: ", o.kafka_unreachable));
      stateLine.textContent = o.error ? "store unreachable" : o.kafka_unreachable ? "Kafka unreachable" : "live";
      stateLine.className = o.error || o.kafka_unreachable ? "bad" : "good";
      header.textContent = `read at ${o.at} in ${o.took_s} s; refreshed twice a second`;
      grid.replaceChildren(...o.datasets.map(datasetCard), ...o.derived.map(derivedCard));
      rendered();
    } catch (error) {
      stateLine.textContent = "console unreachable"; stateLine.className = "bad";
      alerts.replaceChildren(problem(`the console did not answer: ${error.message}`));
    }
    setTimeout(refresh, POLL_MS);
  }
  refresh();
}

// --- Ticker
function today() { return new Date().toLocaleDateString("en-CA", { timeZone: "America/New_York" }); }

async function ticker() {
  const params = new URLSearchParams(location.search);
  const form = el("form", { method: "get", action: "/ticker", class: "inline" },
    el("label", {}, "ticker ", el("input", { name: "ticker", value: params.get("ticker") || "", required: true, size: 8 })),
    el("label", {}, "day ", el("input", { name: "date", type: "date", value: params.get("date") || today() })),
    el("label", {}, el("input", { name: "synthetic", type: "checkbox", value: "1", checked: params.get("synthetic") === "1" }), " synthetic"),
    el("button", { type: "submit" }, "show"));
  const info = el("p", { class: "meta", id: "bars-info" });
  const box = el("div", { id: "chart" });
  const last = el("p", { id: "last-bar", class: "meta" });
  main.append(el("h1", {}, "Ticker"), form, info, box, last);
  if (!params.get("ticker")) { info.textContent = "choose a ticker and a day"; rendered(); return; }
  const query = new URLSearchParams({ ticker: params.get("ticker"), date: params.get("date") || today(),
    synthetic: params.get("synthetic") === "1" ? "1" : "0" });
  const newYork = (t) => new Date(t * 1000).toLocaleTimeString("en-US", { timeZone: "America/New_York", hour: "2-digit", minute: "2-digit", hour12: false });
  const chart = LightweightCharts.createChart(box, { height: 460, autoSize: true,
    layout: { background: { color: "#ffffff" }, textColor: "#333" },
    timeScale: { timeVisible: true, secondsVisible: false, tickMarkFormatter: newYork },
    localization: { timeFormatter: newYork } });
  const candles = chart.addSeries(LightweightCharts.CandlestickSeries, { upColor: "#2e9d5b", downColor: "#c8453c",
    borderVisible: false, wickUpColor: "#2e9d5b", wickDownColor: "#c8453c" });
  const volume = chart.addSeries(LightweightCharts.HistogramSeries, { priceFormat: { type: "volume" }, priceScaleId: "" });
  volume.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
  candles.priceScale().applyOptions({ scaleMargins: { top: 0.05, bottom: 0.25 } });
  // what was said: a marker per minute with news (headlines on hover and listed below, as text), and the
  // signals' 15-minute mean sentiment of news and of posts in a pane under the candles
  const markers = LightweightCharts.createSeriesMarkers(candles, []);
  const newsLine = chart.addSeries(LightweightCharts.LineSeries, { color: "#3b6fd6", lineWidth: 2, title: "news 15m" }, 1);
  const postsLine = chart.addSeries(LightweightCharts.LineSeries, { color: "#c27c0e", lineWidth: 2, title: "posts 15m" }, 1);
  const tip = el("p", { id: "news-tip", class: "meta" });
  const list = el("ul", { id: "news-list" });
  box.after(tip);
  last.after(el("h2", {}, "News"), list);
  let newsByMinute = new Map();
  chart.subscribeCrosshairMove((param) => {
    const items = param.time === undefined ? null : newsByMinute.get(param.time);
    tip.textContent = items ? items.map((a) => `${newYork(a.time)} ${a.headline}`).join(" · ") : "";
  });
  const signed = (v) => (v === null || v === undefined ? "not scored" : (v >= 0 ? "+" : "") + v.toFixed(2));
  function placeMarkers() {
    const placed = [...newsByMinute.keys()].filter((t) => shown.has(t)).sort((a, b) => a - b).map((t) => {
      const mean = newsByMinute.get(t).reduce((sum, a) => sum + (a.sentiment || 0), 0) / newsByMinute.get(t).length;
      return { time: t, position: "aboveBar", shape: "circle", color: mean > 0.05 ? "#2e9d5b" : mean < -0.05 ? "#c8453c" : "#7a8594" };
    });
    markers.setMarkers(placed);
    window.consoleChart.markers = placed.length;
  }
  async function refreshNews() {
    try {
      const found = await api(`/api/news?${query}`);
      newsByMinute = new Map();
      for (const a of found.news) newsByMinute.set(a.time, [...(newsByMinute.get(a.time) || []), a]);
      list.replaceChildren(...found.news.map((a) => {
        const headline = /^https?:\/\//i.test(a.url) ? el("a", { href: a.url, rel: "noopener noreferrer" }, a.headline) : a.headline;
        return el("li", { class: "news" }, `${newYork(a.time)} `, headline, ` — ${a.source}, sentiment ${signed(a.sentiment)}`);
      }));
      if (!found.news.length) list.replaceChildren(el("li", {}, "no news stored for this ticker and day"));
      const points = (field) => found.sentiment.filter((p) => p[field] !== null).map((p) => ({ time: p.time, value: p[field] }));
      newsLine.setData(points("news")); postsLine.setData(points("posts"));
      window.consoleChart.news = found.news.length;
      window.consoleChart.sentiment = found.sentiment.length;
      placeMarkers();
    } catch (error) {
      list.replaceChildren(el("li", { class: "problem" }, `cannot read the news: ${error.message}`));
    }
    setTimeout(refreshNews, NEWS_POLL_MS);
  }
  let shown = new Map();
  window.consoleChart = { bars: 0, last: null, markers: 0, news: 0, sentiment: 0 };
  async function refresh() {
    try {
      const found = await api(`/api/bars?${query}`);
      const fresh = new Map(found.bars.map((b) => [b.time, b]));
      const sameStart = found.bars.length >= shown.size && [...shown.keys()].every((t) => fresh.has(t));
      const volumeOf = (b) => ({ time: b.time, value: b.volume, color: b.close >= b.open ? "#9fd5b5" : "#e8aaa5" });
      if (!sameStart || shown.size === 0) {
        candles.setData(found.bars); volume.setData(found.bars.map(volumeOf));
        if (found.bars.length) chart.timeScale().fitContent();
      } else {
        for (const b of found.bars) {  // new minutes and the newest one corrected: appended live
          const old = shown.get(b.time);
          if (!old || old.close !== b.close || old.high !== b.high || old.low !== b.low || old.volume !== b.volume) {
            if (b.time >= Math.max(...shown.keys())) { candles.update(b); volume.update(volumeOf(b)); }
            else { candles.setData(found.bars); volume.setData(found.bars.map(volumeOf)); break; }
          }
        }
      }
      shown = fresh;
      const newest = found.bars[found.bars.length - 1];
      Object.assign(window.consoleChart, { bars: found.bars.length, last: newest ? newest.time : null });
      placeMarkers();
      info.textContent = `${found.ticker} ${found.date}${found.synthetic ? " (synthetic trades)" : ""}: ` +
        `${found.bars.length} one-minute bars (New York time), refreshed twice a second`;
      info.dataset.bars = String(found.bars.length);
      last.textContent = newest ? `last minute ${new Date(newest.time * 1000).toLocaleTimeString("en-US", { timeZone: "America/New_York", hour12: false })}: ` +
        `O ${newest.open} H ${newest.high} L ${newest.low} C ${newest.close} V ${newest.volume}` : "no bars yet";
      stateLine.textContent = "live"; stateLine.className = "good";
      rendered();
    } catch (error) {
      info.textContent = `cannot read the bars: ${error.message}`; stateLine.textContent = "error"; stateLine.className = "bad";
    }
    setTimeout(refresh, POLL_MS);
  }
  refresh();
  refreshNews();
}

// --- Tables
function deleted(c) {  // what a vacuum says it deletes (VACUUM START) and deleted (VACUUM END)
  if (c.files_to_delete !== null) return `${number(c.files_to_delete)} files (${number(c.bytes_to_delete)} bytes) to delete`;
  if (c.files_deleted !== null) return `${number(c.files_deleted)} files deleted`;
  return "";
}

async function tables() {
  main.append(el("h1", {}, "Tables"));
  try {
    const found = await api("/api/tables");
    for (const t of found.tables) {
      const section = el("section", { class: "card wide", "data-table": t.name }, el("h2", {}, t.name, " ", el("small", {}, t.uri)));
      if (t.version === null) { section.append(el("p", {}, "none yet")); main.append(section); continue; }
      section.append(el("p", { "data-field": "summary" }, `version ${t.version}, ${number(t.files)} files, ${number(t.rows)} rows`));
      section.append(el("h3", {}, `Newest ${t.history.length} commits`));
      section.append(table(["version", "when", "operation", "files added", "files removed", "rows added",
        "Kafka offsets stored (topic [partition] → last offset) and other transaction ids"],
        t.history.map((c) => [c.version, c.at, c.operation, c.files_added ?? "?", c.files_removed ?? "?", c.rows_added ?? "?",
          Object.entries(c.transactions).map(([k, v]) => `${k} → ${v}`).join(", ")]), { class: "history" }));
      section.append(el("h3", {}, "Maintenance runs"), el("p", { class: "meta", "data-field": "maintenance-summary" },
        `${t.maintenance.length} among the newest ${number(t.commits_read)} commits (compaction: OPTIMIZE, ` +
        "the bars writer's rewrites; VACUUM: files no version needs deleted from the store)"));
      if (t.maintenance.length) {
        section.append(table(["version", "when", "operation", "files removed", "files added", "bytes before", "bytes after",
          "deleted from the store"],
          t.maintenance.map((c) => [c.version, c.at, c.operation, number(c.files_removed), number(c.files_added),
            number(c.bytes_removed), number(c.bytes_added), deleted(c)]), { class: "maintenance" }));
      }
      main.append(section);
    }
    rendered();
  } catch (error) { main.append(problem(error.message)); rendered(); }
}

// --- Dead letters
async function deadLetters() {
  main.append(el("h1", {}, "Dead letters"));
  try {
    const found = await api("/api/dead-letters");
    if (found.error) main.append(problem(found.error));
    main.append(el("p", { class: "meta" }, `${found.letters.length} newest of ${found.total_read} read from the tails of the dead-letter topics`));
    main.append(table(["when", "dataset", "reason", "origin", "key", "excerpt", "original"],
      found.letters.map((d) => [d.at, d.dataset, d.reason ?? "(no reason)",
        d.topic === null ? "" : `${d.topic} [${d.partition}] @ ${d.offset}`, d.key ?? "",
        el("code", { class: "excerpt" }, d.excerpt ?? ""),
        d.original_uri ? el("a", { href: `/api/dead-letter-original?${new URLSearchParams({ uri: d.original_uri })}`, class: "original" },
          `${d.original_uri} (${d.original_size} bytes)`) : `${d.size} bytes`]), { id: "dead-letters" }));
    rendered();
  } catch (error) { main.append(problem(error.message)); rendered(); }
}

// --- SQL
async function sql() {
  const box = el("textarea", { id: "query", rows: 6, cols: 100, spellcheck: false,
    value: "SELECT ticker, count(*) AS bars, min(low) AS low, max(high) AS high FROM bars_synthetic GROUP BY ALL ORDER BY bars DESC LIMIT 20" });
  const run = el("button", { id: "run", type: "button" }, "run");
  const download = el("button", { id: "csv", type: "button" }, "CSV");
  const out = el("div", { id: "result" });
  main.append(el("h1", {}, "SQL"), el("p", { class: "meta" },
    "DuckDB over the lake's tables (the views of marketstream sql), read-only: no file or network access, " +
    "at most 1 000 rows, 512 MB and 10 s."), box, el("div", {}, run, " ", download), out);
  const body = () => JSON.stringify({ query: box.value });
  let runs = 0;
  run.addEventListener("click", async () => {
    const mine = ++runs;  // an answer to an earlier click that comes late is not shown
    out.replaceChildren(el("p", { class: "meta" }, "running…"));
    try {
      const r = await api("/api/sql", { method: "POST", headers: { "content-type": "application/json" }, body: body() });
      if (mine !== runs) return;
      out.replaceChildren(el("p", { class: "meta", id: "sql-meta" }, `${r.rows.length} rows in ${r.seconds} s` + (r.cut ? ` (the first ${r.limit}; more were cut)` : "")),
        table(r.columns, r.rows.map((row) => row.map((v) => v === null ? "NULL" : typeof v === "object" ? JSON.stringify(v) : v)), { id: "sql-table" }));
    } catch (error) { if (mine === runs) out.replaceChildren(problem(error.message)); }
  });
  download.addEventListener("click", async () => {
    const response = await fetch("/api/sql.csv", { method: "POST", headers: { "content-type": "application/json" }, body: body() });
    if (!response.ok) { out.replaceChildren(problem((await response.json()).error)); return; }
    const link = el("a", { href: URL.createObjectURL(await response.blob()), download: "marketstream-query.csv" });
    document.body.append(link); link.click(); link.remove();
  });
  rendered();
  run.click();
}

({ overview, ticker, tables, "dead-letters": deadLetters, sql })[PAGE]();
