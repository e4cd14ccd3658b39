/* A workspace's pages: its status while it starts, running commands and their live output. */
(function () {
  "use strict";
  const { postJSON, flash, refresh } = window.DevBench;
  const TERMINAL = ["completed", "failed", "timed_out", "cancelled", "lost"];
  const wsBase = (location.protocol === "https:" ? "wss://" : "ws://") + location.host;

  /* --- status: a workspace being created (or removed) reloads its page when that ends --- */
  const head = document.getElementById("workspace-head");
  const mib = (n) => `${(n / 1048576).toFixed(1)} MiB`;
  const showProgress = (progress) => {
    const line = document.getElementById("workspace-progress");
    if (!line || !progress || progress.phase !== "pulling") return;
    line.textContent = `Pulling ${progress.image}: ${progress.layers_done}/${progress.layers_total} ` +
      `layers, ${mib(progress.bytes_done)} of ${mib(progress.bytes_total)}…`;
  };
  if (head && ["creating", "removing"].includes(head.dataset.status)) {
    const poll = async () => {
      try {
        const response = await fetch(head.dataset.statusUrl, {
          credentials: "same-origin", headers: { Accept: "application/json" },
        });
        if (response.ok) {
          const data = await response.json();
          if (data.status !== head.dataset.status) {
            location.reload();
            return;
          }
          showProgress(data.progress);
        }
      } catch (err) { /* try again */ }
      setTimeout(poll, 1000);
    };
    setTimeout(poll, 800);
  }

  const commands = document.getElementById("commands");
  if (!commands) return;

  const panel = document.getElementById("output-panel");
  const empty = document.getElementById("output-empty");
  const output = document.getElementById("output");
  const title = document.getElementById("output-title");
  const statusBadge = document.getElementById("output-status");
  const exitLabel = document.getElementById("output-exit");
  const cancelButton = document.getElementById("output-cancel");
  const rows = document.getElementById("exec-rows");

  // The browser keeps at most this many characters of one exec's output on screen.
  const MAX_CHARS = 2000000;

  function decode(message) {
    if (message.encoding !== "base64") return message.data;
    const bytes = Uint8Array.from(atob(message.data), (c) => c.charCodeAt(0));
    return new TextDecoder("utf-8").decode(bytes);
  }

  /* One exec on screen: its websocket, resumed after the last seq on reconnects. */
  class ExecView {
    constructor(execId, command, status) {
      this.execId = execId;
      this.lastSeq = 0;
      this.chars = 0;
      this.done = false;
      this.retries = 0;
      this.socket = null;
      output.textContent = "";
      title.textContent = "$ " + (command || execId);
      title.title = execId;
      exitLabel.textContent = "";
      exitLabel.className = "exit";
      this.setStatus(status || "starting");
      panel.hidden = false;
      if (empty) empty.hidden = true;
      highlight(execId);
      this.connect();
    }

    setStatus(status) {
      output.dataset.empty = TERMINAL.includes(status) ? "No output." : "Waiting for output…";
      statusBadge.textContent = status.replace("_", " ");
      statusBadge.className = "badge badge-" + status;
      panel.dataset.status = status;
      if (cancelButton) cancelButton.hidden = TERMINAL.includes(status);
    }

    connect() {
      const url = wsBase + "/ws/execs/" + encodeURIComponent(this.execId) + "/?after_seq=" +
        this.lastSeq + "&tenant=" + encodeURIComponent(commands.dataset.tenant);
      const socket = new WebSocket(url);
      this.socket = socket;
      socket.onmessage = (event) => {
        if (this.socket !== socket) return;
        this.retries = 0;
        this.handle(JSON.parse(event.data));
      };
      socket.onclose = (event) => {
        if (this.socket !== socket || this.done) return;
        if (event.code >= 4400 && event.code < 4500 && event.code !== 4409) {
          this.done = true;  // refused for good (not found, not allowed)
          return;
        }
        // A dropped connection: resume after the last seq received, backing off.
        const delay = Math.min(8000, 250 * 2 ** this.retries);
        this.retries += 1;
        this.note("connection lost; reconnecting…");
        setTimeout(() => { if (!this.done && this.socket === socket) this.connect(); }, delay);
      };
    }

    handle(message) {
      if (message.type === "output") {
        if (message.seq <= this.lastSeq) return;  // already shown
        if (this.lastSeq === 0 && message.seq > 1) {
          this.note("older output was dropped by the tenant's output cap");
        }
        this.lastSeq = message.seq;
        if (!TERMINAL.includes(panel.dataset.status)) this.setStatus("running");
        this.append(decode(message), message.stream);
      } else if (message.type === "complete") {
        this.done = true;
        this.setStatus(message.status);
        if (message.exit_code !== null && message.exit_code !== undefined) {
          exitLabel.textContent = "exit code " + message.exit_code;
          exitLabel.className = "exit " + (message.exit_code === 0 ? "exit-ok" : "exit-bad");
        }
        if (message.error) this.note((message.error_code ? message.error_code + ": " : "") + message.error);
        if (message.truncated) this.note("output was truncated by the tenant's output cap");
        if (rows) refresh(rows);
      } else if (message.type === "error") {
        this.done = true;
        this.note(message.code + ": " + message.message, "error");
      }
    }

    append(text, stream) {
      const stick = output.scrollHeight - output.scrollTop - output.clientHeight < 40;
      const last = output.lastChild;
      if (last && last.nodeType === 1 && last.dataset.stream === stream) {
        last.textContent += text;
      } else {
        const span = document.createElement("span");
        span.className = stream;
        span.dataset.stream = stream;
        span.textContent = text;
        output.append(span);
      }
      this.chars += text.length;
      while (this.chars > MAX_CHARS && output.firstChild) {
        this.chars -= output.firstChild.textContent.length;
        output.firstChild.remove();
      }
      if (stick) output.scrollTop = output.scrollHeight;
    }

    note(text, kind) {
      const line = document.createElement("div");
      line.className = "term-note" + (kind === "error" ? " term-note-error" : "");
      line.textContent = "── " + text;
      output.append(line);
      output.scrollTop = output.scrollHeight;
    }

    close() {
      this.done = true;
      if (this.socket) this.socket.close();
    }
  }

  let current = null;
  function open(execId, command, status) {
    if (current) current.close();
    current = new ExecView(execId, command, status);
  }

  function highlight(execId) {
    if (!rows) return;
    rows.querySelectorAll(".exec-row").forEach((row) => {
      row.classList.toggle("selected", row.dataset.execId === execId);
    });
  }

  if (rows) {
    const pick = (event) => {
      const row = event.target.closest(".exec-row");
      if (!row) return;
      if (event.type === "keydown" && event.key !== "Enter") return;
      open(row.dataset.execId, row.dataset.command, row.dataset.status);
    };
    rows.addEventListener("click", pick);
    rows.addEventListener("keydown", pick);
    rows.addEventListener("devbench:refreshed", () => {
      if (!current) return;
      highlight(current.execId);
      // The stream only speaks when there is output: the list knows when a quiet one runs.
      const row = rows.querySelector('[data-exec-id="' + CSS.escape(current.execId) + '"]');
      if (row && !current.done && !TERMINAL.includes(row.dataset.status)) current.setStatus(row.dataset.status);
    });
  }

  if (cancelButton) {
    cancelButton.addEventListener("click", async () => {
      if (!current) return;
      cancelButton.disabled = true;
      try {
        await postJSON(commands.dataset.cancelUrl.replace("EXEC_ID", encodeURIComponent(current.execId)));
      } catch (err) {
        flash("error", err.message, err.code);
      } finally {
        cancelButton.disabled = false;
      }
    });
  }

  /* Run: start through the page's form endpoint, then stream over the websocket. */
  const form = document.getElementById("run-form");
  if (form) {
    const input = document.getElementById("command");
    const history = [];
    let cursor = 0;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const command = input.value;
      if (!command.trim()) return;
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      try {
        const started = await postJSON(form.action, new FormData(form));
        history.push(command);
        cursor = history.length;
        input.value = "";
        open(started.exec_id, started.command, started.status);
        if (rows) refresh(rows);
      } catch (err) {
        flash("error", err.message, err.code);
      } finally {
        button.disabled = false;
        input.focus();
      }
    });
    // Up/down walk through the commands run from this page, like a shell.
    input.addEventListener("keydown", (event) => {
      if (event.key === "ArrowUp" && cursor > 0) {
        cursor -= 1;
        input.value = history[cursor];
        event.preventDefault();
      } else if (event.key === "ArrowDown" && cursor < history.length) {
        cursor += 1;
        input.value = history[cursor] || "";
        event.preventDefault();
      }
    });
  }

  if (commands.dataset.openExec) {
    const row = rows && rows.querySelector('[data-exec-id="' + CSS.escape(commands.dataset.openExec) + '"]');
    open(commands.dataset.openExec, row ? row.dataset.command : "", row ? row.dataset.status : "");
  }
})();
