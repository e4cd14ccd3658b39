// A template's page: follow its build log while it runs (polls the log from the offset shown).
(function () {
  "use strict";
  const log = document.getElementById("build-log");
  if (!log || log.dataset.done === "true") return;
  let offset = Number(log.dataset.offset || 0);
  async function poll() {
    try {
      const response = await fetch(`${log.dataset.logUrl}?offset=${offset}`, { credentials: "same-origin" });
      if (response.ok) {
        const body = await response.json();
        if (body.text) {
          log.textContent += body.text;
          log.scrollTop = log.scrollHeight;
        }
        offset = body.next_offset;
        const status = document.getElementById("template-status");
        status.textContent = body.status;
        status.className = `badge badge-${body.status}`;
        if (body.done) {
          if (body.status === "failed") {
            document.getElementById("template-error").hidden = false;
            document.getElementById("template-error-code").textContent = body.error_code;
            document.getElementById("template-error-message").textContent = body.status_message;
          }
          return;
        }
      }
    } catch (err) {
      // The network hiccupped: try again on the next tick.
    }
    setTimeout(poll, 700);
  }
  setTimeout(poll, 300);
})();
