// Paddock's live connection, one per browser, shared by all its dashboard
// tabs (a SharedWorker): browsers open at most six connections to one
// origin over HTTP/1.1, so tabs holding streams of their own stop loading at
// the seventh. The worker follows what the open tabs follow over one
// `GET /api/live` (server/src/http/live.rs) and hands each tab its frames
// (app/src/live.rs is the tab's side).
//
// From a tab (JSON text): {op: "sub", sub, topic, after} follows `topic`
// ("list", or a session id after event `after`) as subscription `sub`;
// {op: "unsub", sub}; {op: "ping"} (every few seconds while the tab
// lives); {op: "bye"} (the tab goes away). To a tab: [sub, name, data],
// where name is the stream's own ("event", "html", "delta", "session",
// "deleted", "resync"), or "open" (the connection is up: the tab misses
// nothing from here), "error" (it is down; the worker reconnects after
// RETRY_MS and resumes every transcript after the last event it passed
// on), "closed" (data: gone, invalid or retry; that subscription ended).
"use strict";

const RETRY_MS = 2000;
// Subscriptions changing within this long make one new connection.
const SETTLE_MS = 25;
// A tab not heard from for this long is gone (a crashed tab says no bye;
// hidden tabs' timers may fire only once a minute).
const SILENCE_MS = 150000;

// port -> { subs: Map(sub -> topic), heard: time }
const tabs = new Map();
// topic -> last event passed on (sessions), or null (the list)
const topics = new Map();
// The topics the current connection follows.
let following = new Set();
let source = null;
let open = false;
let reconnect = null;

onconnect = (e) => {
  const port = e.ports[0];
  port.onmessage = (m) => fromTab(port, m.data);
  port.start();
};

function tabOf(port) {
  let tab = tabs.get(port);
  if (!tab) {
    tab = { subs: new Map(), heard: Date.now() };
    tabs.set(port, tab);
  }
  return tab;
}

function fromTab(port, text) {
  let msg;
  try {
    msg = JSON.parse(text);
  } catch {
    return;
  }
  if (msg.op === "bye") {
    tabs.delete(port);
    prune();
    return;
  }
  const tab = tabOf(port);
  tab.heard = Date.now();
  if (msg.op === "sub") {
    tab.subs.set(msg.sub, msg.topic);
    const after = msg.topic === "list" ? null : Math.max(0, Math.floor(msg.after) || 0);
    if (!topics.has(msg.topic)) {
      topics.set(msg.topic, after);
      soon();
    } else if (after !== null && after < topics.get(msg.topic)) {
      // This tab holds less than the others: from where it is (the others
      // drop what they already have).
      topics.set(msg.topic, after);
      soon();
    } else if (open && following.has(msg.topic)) {
      port.postMessage([msg.sub, "open", ""]);
    }
  } else if (msg.op === "unsub") {
    tab.subs.delete(msg.sub);
    prune();
  }
}

// Stops following what no tab follows any more.
function prune() {
  const used = new Set();
  for (const tab of tabs.values()) for (const topic of tab.subs.values()) used.add(topic);
  let changed = false;
  for (const topic of [...topics.keys()]) {
    if (!used.has(topic)) {
      topics.delete(topic);
      changed = true;
    }
  }
  if (changed) soon();
}

function soon() {
  clearTimeout(reconnect);
  reconnect = setTimeout(connect, SETTLE_MS);
}

function connect() {
  clearTimeout(reconnect);
  if (source) source.close();
  source = null;
  open = false;
  following = new Set(topics.keys());
  if (following.size === 0) return;
  const sessions = [];
  for (const [topic, after] of topics) if (topic !== "list") sessions.push(`${topic}:${after}`);
  let url = "/api/live?sessions=" + sessions.join(",");
  if (topics.has("list")) url += "&list=true";
  const es = new EventSource(url);
  source = es;
  es.onopen = () => {
    if (source !== es) return;
    open = true;
    toAll("open");
  };
  es.onmessage = (m) => {
    if (source === es) frame(m.data);
  };
  es.onerror = () => {
    if (source !== es) return;
    // Not the browser's own reconnect: it would resume from where this
    // connection started, not from the last event passed on.
    es.close();
    source = null;
    open = false;
    toAll("error");
    reconnect = setTimeout(connect, RETRY_MS);
  };
}

// `<topic> <name> <data>`
function frame(line) {
  const a = line.indexOf(" ");
  const b = line.indexOf(" ", a + 1);
  if (a < 0 || b < 0) return;
  const topic = line.slice(0, a);
  const name = line.slice(a + 1, b);
  const data = line.slice(b + 1);
  if (name === "event" && topics.has(topic)) {
    try {
      const seq = JSON.parse(data).seq;
      if (seq > topics.get(topic)) topics.set(topic, seq);
    } catch {}
  } else if (name === "closed") {
    // Followed again only if a tab asks again.
    topics.delete(topic);
    following.delete(topic);
  }
  toTopic(topic, name, data);
}

function toTopic(topic, name, data) {
  for (const [port, tab] of tabs)
    for (const [sub, t] of tab.subs) if (t === topic) port.postMessage([sub, name, data]);
}

function toAll(name) {
  for (const [port, tab] of tabs)
    for (const [sub, t] of tab.subs) if (following.has(t)) port.postMessage([sub, name, ""]);
}

setInterval(() => {
  const now = Date.now();
  for (const [port, tab] of tabs) if (now - tab.heard > SILENCE_MS) tabs.delete(port);
  prune();
}, 30000);
