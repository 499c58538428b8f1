// The session page's terminals (app/src/pages/session/terminal.rs): xterm.js
// with its fit add-on (from npm, copied into /vendor/xterm/ when the site is
// built, and loaded the first time a terminal opens) over the terminal
// WebSocket, GET /api/sessions/{id}/terminal (server/src/http/terminals.rs).
// Keys go as binary messages (a paste in pieces of at most PIECE bytes: the
// server takes messages of up to 64 KiB), sizes as {"resize": {rows, cols}};
// what the shell shows comes as binary messages, and {"closed": why} last.
"use strict";
if (!window.paddockTerminal) {
  const PIECE = 16 * 1024;
  // Rows and columns a terminal has at most (the server's bound): a box
  // wider than that (a large screen zoomed out) shows this many.
  const SIZE_MAX = 1000;
  let loading = null;
  const load = () => {
    if (!loading) {
      const script = (src) =>
        new Promise((resolve, reject) => {
          const element = document.createElement("script");
          element.src = src;
          element.onload = resolve;
          element.onerror = () => reject(new Error(`${src} did not load`));
          document.head.appendChild(element);
        });
      const css = document.createElement("link");
      css.rel = "stylesheet";
      css.href = "/vendor/xterm/xterm.css";
      document.head.appendChild(css);
      loading = script("/vendor/xterm/xterm.js").then(() => script("/vendor/xterm/addon-fit.js"));
      loading.catch(() => (loading = null));
    }
    return loading;
  };

  window.paddockTerminal = {
    // Opens session `id`'s terminal in `element`; `onClosed(why)` is called
    // once, when it ends. Returns {close(), focus()}.
    open(element, id, onClosed) {
      let socket = null;
      let term = null;
      let observer = null;
      let ended = false;
      const end = (why) => {
        if (ended) return;
        ended = true;
        if (observer) observer.disconnect();
        if (term) term.options.disableStdin = true;
        onClosed(why);
      };
      // What it showed stays readable until its tab closes.
      const dispose = () => {
        if (term) term.dispose();
        term = null;
      };
      load().then(
        () => {
          if (ended) return;
          term = new window.Terminal({
            cursorBlink: true,
            fontSize: 13,
            fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace",
            scrollback: 5000,
          });
          const addon = new window.FitAddon.FitAddon();
          term.loadAddon(addon);
          const fit = () => {
            addon.fit();
            if (term.rows > SIZE_MAX || term.cols > SIZE_MAX) {
              term.resize(Math.min(term.cols, SIZE_MAX), Math.min(term.rows, SIZE_MAX));
            }
          };
          term.open(element);
          fit();
          const url = new URL(
            `/api/sessions/${encodeURIComponent(id)}/terminal?rows=${term.rows}&cols=${term.cols}`,
            location.href,
          );
          url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
          socket = new WebSocket(url);
          socket.binaryType = "arraybuffer";
          let opened = false;
          const encoder = new TextEncoder();
          const send = (data) => {
            if (socket.readyState === WebSocket.OPEN) socket.send(data);
          };
          const type = (bytes) => {
            for (let at = 0; at < bytes.length; at += PIECE) send(bytes.subarray(at, at + PIECE));
          };
          const resize = () => send(JSON.stringify({ resize: { rows: term.rows, cols: term.cols } }));
          socket.onopen = () => {
            opened = true;
            // It may have been fitted again while the socket opened.
            resize();
            term.focus();
          };
          socket.onmessage = (message) => {
            if (typeof message.data !== "string") {
              term.write(new Uint8Array(message.data));
              return;
            }
            try {
              const said = JSON.parse(message.data);
              if (typeof said.closed === "string") end(said.closed);
            } catch (_) {
              // Not for us.
            }
          };
          socket.onclose = () => end(opened ? "the connection closed" : "the server did not open it");
          term.onData((data) => type(encoder.encode(data)));
          term.onBinary((data) => type(Uint8Array.from(data, (c) => c.charCodeAt(0))));
          term.onResize(resize);
          // Fitted again as the box changes; not while it is hidden.
          observer = new ResizeObserver(() => {
            if (!ended && element.offsetParent !== null) fit();
          });
          observer.observe(element);
        },
        (error) => end(error.message),
      );
      return {
        close() {
          if (socket) socket.close(1000);
          end("closed here");
          dispose();
        },
        focus() {
          if (term && !ended) term.focus();
        },
      };
    },
  };
}
