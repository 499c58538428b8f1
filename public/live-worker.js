// Paddock's live connection, one per browser, shared by all its dashboard
// tabs (a SharedWorker): browsers open at most six connections to one
// origin over HTTP/1.1, so tabs holding streams of their own stop loading at
// the seventh. The worker follows what the open tabs follow over one
// `GET /api/live` (server/src/http/live.rs) and hands each tab its frames
// (app/src/live.rs is the tab's side).
//
// From a tab (JSON text): {op: "sub", sub, topic, after} follows `topic`
// ("list", or a session id after event `after`) as subscription `sub`;
// {op: "unsub", sub}; {op: "hello"} (first, from a tab that starts or
// comes back from the back-forward cache); {op: "ping"} (every few seconds
// while the tab lives); {op: "bye"} (the tab goes away). To a tab: [sub, name, data],
// where name is the stream's own ("event", "html", "delta", "session",
// "deleted", "resync"), or "open" (the connection is up: the tab misses
// nothing from here), "error" (it is down; the worker reconnects after
// RETRY_MS, doubled after each failure in a row up to RETRY_MAX_MS, and
// resumes each transcript after the oldest event a tab has),
// "closed" (data: gone, invalid or retry; that subscription ended), or
// [0, "resub", ""] (the worker forgot this tab, which spoke again without
// a hello: subscribe again). Each tab gets each event of a transcript once
// and in order, after its own.
//
// When what the tabs follow changes, the new connection is made before the
// old one is let go: the old one delivers until the new one is open, so a
// tab opening or closing costs the others no list frame or event, and they
// are not told to catch up. Frames of the moment between come twice: list
// rows (tabs keep the newest of each), events (passed on once, by their
// seq) and deltas, which the old one stops passing on when the hand-over
// starts (appended text cannot be told apart; the stored event follows).
// Should the old one fail before the new one is open, the tabs are told
// (they catch up once it is).
"use strict";

const RETRY_MS = 2000;
const RETRY_MAX_MS = 60000;
// Subscriptions changing within this long make one new connection.
const SETTLE_MS = 25;
// A tab not heard from for this long is dropped (a crashed tab says no
// bye); one that speaks again after that is asked to subscribe again.
const SILENCE_MS = 150000;
// The server says something at least every 15 s (`- ping -` while idle):
// a connection quiet for this long is dead (a laptop back from sleep, a
// proxy that dropped it) and made again.
const QUIET_MS = 45000;

// port -> { subs: Map(sub -> { topic, last, closed }), heard: time }. `last`
// is the last event of a transcript the tab has (the list: null); a closed
// sub stays until the tab asks again or lets go.
const tabs = new Map();
// The topics the current connection follows, each with the newest event
// seen on it (the list: null).
let following = new Map();
let source = null;
// The connection `source` replaces, delivering until `source` is open.
let handover = null;
let open = false;
let reconnect = null;
// Connections that failed in a row (none opened between).
let failures = 0;
let settling = null;
// When `source` last said anything.
let heard = 0;

onconnect = (e) => {
  const port = e.ports[0];
  port.onmessage = (m) => fromTab(port, m.data);
  port.start();
};

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
  let tab = tabs.get(port);
  if (!tab) {
    tab = { subs: new Map(), heard: 0 };
    tabs.set(port, tab);
    // Dropped while silent (a sleeping laptop): the tab says again what it
    // follows (one that starts says hello first).
    if (msg.op !== "hello") port.postMessage([0, "resub", ""]);
  }
  tab.heard = Date.now();
  if (msg.op === "sub") {
    const last = msg.topic === "list" ? null : Math.max(0, Math.floor(msg.after) || 0);
    tab.subs.set(msg.sub, { topic: msg.topic, last });
    if (!following.has(msg.topic)) {
      soon();
    } else if (last !== null && following.get(msg.topic) > last) {
      // Events this tab lacks went by already: from where it is.
      soon();
    } else if (open) {
      port.postMessage([msg.sub, "open", ""]);
    }
  } else if (msg.op === "unsub") {
    tab.subs.delete(msg.sub);
    prune();
  }
}

// What the tabs follow: each topic with the oldest event one of them has.
function wanted() {
  const topics = new Map();
  for (const tab of tabs.values()) {
    for (const { topic, last, closed } of tab.subs.values()) {
      if (closed) continue;
      const known = topics.get(topic);
      topics.set(topic, known === undefined || (last !== null && last < known) ? last : known);
    }
  }
  return topics;
}

// Stops following what no tab follows any more.
function prune() {
  const topics = wanted();
  for (const topic of following.keys()) {
    if (!topics.has(topic)) {
      soon();
      return;
    }
  }
}

// A new connection shortly: one for all that changes meanwhile, however
// busy the current one is.
function soon() {
  if (settling !== null) return;
  clearTimeout(reconnect);
  settling = setTimeout(connect, SETTLE_MS);
}

function connect() {
  clearTimeout(reconnect);
  clearTimeout(settling);
  settling = null;
  if (open) {
    // The open one delivers until the next one opens.
    letGo();
    handover = source;
  } else if (source) {
    // Not open yet: the one before it (if any) still delivers.
    source.close();
  }
  source = null;
  open = false;
  const topics = wanted();
  following = new Map();
  if (topics.size === 0) {
    letGo();
    return;
  }
  const sessions = [];
  for (const [topic, last] of topics) {
    following.set(topic, last);
    if (topic !== "list") sessions.push(`${topic}:${last}`);
  }
  let url = "/api/live?sessions=" + sessions.join(",");
  if (topics.has("list")) url += "&list=true";
  const es = new EventSource(url);
  source = es;
  es.onopen = () => {
    if (source !== es) return;
    heard = Date.now();
    letGo();
    open = true;
    failures = 0;
    toAll("open");
  };
  es.onmessage = (m) => {
    if (source === es) {
      heard = Date.now();
      frame(m.data, false);
    } else if (handover === es) frame(m.data, true);
  };
  es.onerror = () => {
    if (handover === es) {
      letGo();
      if (!open) toAll("error");
      return;
    }
    if (source === es) down();
  };
}

// The connection failed (or went quiet): the tabs are told, and it is made
// again after a pause. Not the browser's own reconnect: it would resume
// from where this connection started, not from where each tab is.
function down() {
  source.close();
  source = null;
  open = false;
  letGo();
  toAll("error");
  failures += 1;
  reconnect = setTimeout(connect, Math.min(RETRY_MS * 2 ** (failures - 1), RETRY_MAX_MS));
}

// Closes the connection being replaced.
function letGo() {
  if (handover) handover.close();
  handover = null;
}

// `<topic> <name> <data>`; `handing`: from the connection being replaced.
function frame(line, handing) {
  const a = line.indexOf(" ");
  const b = line.indexOf(" ", a + 1);
  if (a < 0 || b < 0) return;
  const topic = line.slice(0, a);
  const name = line.slice(a + 1, b);
  const data = line.slice(b + 1);
  if (!following.has(topic) || (name === "delta" && handing)) return;
  // A transcript's event, and the HTML that comes just before it, go to a
  // tab only as the next event it lacks: each tab gets each event once,
  // in order, whatever the others have.
  let seq = null;
  if (name === "event" || name === "html") {
    try {
      seq = JSON.parse(data).seq;
    } catch {
      return;
    }
    if (name === "event" && seq > following.get(topic)) following.set(topic, seq);
  } else if (name === "closed") {
    // Followed again only if a tab asks again (a new sub).
    following.delete(topic);
  }
  let gap = false;
  for (const [port, tab] of tabs) {
    for (const [id, sub] of tab.subs) {
      if (sub.topic !== topic || sub.closed) continue;
      if (name === "closed") sub.closed = true;
      if (seq !== null) {
        if (seq <= sub.last) continue;
        if (seq > sub.last + 1) {
          gap = true;
          continue;
        }
        if (name === "event") sub.last = seq;
      }
      port.postMessage([id, name, data]);
    }
  }
  // A tab behind the others (it joined with an older event): from there;
  // the connection being made already starts there.
  if (gap && !handing) soon();
}

function toAll(name) {
  for (const [port, tab] of tabs)
    for (const [id, sub] of tab.subs)
      if (following.has(sub.topic) && !sub.closed) port.postMessage([id, name, ""]);
}

setInterval(() => {
  const now = Date.now();
  for (const [port, tab] of tabs) if (now - tab.heard > SILENCE_MS) tabs.delete(port);
  prune();
}, 30000);

setInterval(() => {
  if (open && Date.now() - heard > QUIET_MS) down();
}, 15000);
