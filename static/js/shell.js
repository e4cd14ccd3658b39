/* The interactive shell panel: xterm.js over /ws/workspaces/<id>/shell (raw tty bytes). */
(function () {
  "use strict";
  const el = document.getElementById("shell");
  if (!el || typeof Terminal === "undefined") return;

  const stateLabel = document.getElementById("shell-state");
  const dot = document.getElementById("shell-dot");
  const reconnect = document.getElementById("shell-reconnect");
  const encoder = new TextEncoder();
  const wsBase = (location.protocol === "https:" ? "wss://" : "ws://") + location.host;

  const term = new Terminal({
    cursorBlink: true,
    convertEol: false,
    fontFamily: 'ui-monospace, "SFMono-Regular", "JetBrains Mono", Menlo, Consolas, monospace',
    fontSize: 13,
    lineHeight: 1.15,
    scrollback: 5000,
    theme: {
      background: "#0a0d12",
      foreground: "#d7dde5",
      cursor: "#58a6ff",
      selectionBackground: "#264f78",
    },
  });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(el);
  fit.fit();

  let socket = null;

  function setState(text, kind) {
    stateLabel.textContent = text;
    dot.className = "dot" + (kind ? " dot-" + kind : "");
  }

  function send(data) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(data);
  }

  function connect() {
    reconnect.hidden = true;
    setState("Connecting…");
    const url = wsBase + el.dataset.wsPath + "?rows=" + term.rows + "&cols=" + term.cols +
      "&tenant=" + encodeURIComponent(el.dataset.tenant);
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    socket = ws;
    ws.onopen = () => {
      setState("Connected", "ok");
      term.focus();
    };
    ws.onmessage = (event) => {
      if (typeof event.data !== "string") {
        term.write(new Uint8Array(event.data));
        return;
      }
      const message = JSON.parse(event.data);
      if (message.type === "exit") {
        term.write("\r\n\x1b[2m[shell exited" +
          (message.exit_code !== null ? " with code " + message.exit_code : "") + "]\x1b[0m\r\n");
      } else if (message.type === "error") {
        term.write("\r\n\x1b[31m[" + message.code + "] " + message.message + "\x1b[0m\r\n");
      }
    };
    ws.onclose = (event) => {
      if (socket !== ws) return;
      setState(event.code === 1000 ? "Shell ended" : "Disconnected (" + event.code + ")", "off");
      reconnect.hidden = false;
    };
  }

  term.onData((data) => send(encoder.encode(data)));
  term.onBinary((data) => send(Uint8Array.from(data, (c) => c.charCodeAt(0) & 0xff)));
  term.onResize(({ rows, cols }) => send(JSON.stringify({ type: "resize", rows, cols })));
  window.addEventListener("resize", () => fit.fit());
  reconnect.addEventListener("click", () => {
    term.reset();
    connect();
  });
  connect();
})();
