/* DevBench web UI: behaviour shared by every page (no build step, no dependencies). */
(function () {
  "use strict";

  const csrfToken = () => {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  };

  /* POST a form (or FormData) from a script; errors come back as {code, message}. */
  async function postJSON(url, body) {
    const response = await fetch(url, {
      method: "POST",
      // No body at all rather than an empty multipart one (daphne answers that with 400).
      body: body || null,
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
    });
    let data = {};
    try {
      data = await response.json();
    } catch (err) {
      data = { code: "http_" + response.status, message: response.statusText || "Request failed." };
    }
    if (!response.ok) {
      const error = new Error(data.message || "Request failed.");
      error.code = data.code || "http_" + response.status;
      throw error;
    }
    return data;
  }

  /* A flash message like the server's, at the top of the page. */
  function flash(level, message, code) {
    let box = document.querySelector(".flashes");
    if (!box) {
      box = document.createElement("div");
      box.className = "flashes";
      document.querySelector("main.page").prepend(box);
    }
    const item = document.createElement("div");
    item.className = "flash flash-" + level;
    item.setAttribute("role", level === "error" ? "alert" : "status");
    if (code) {
      const chip = document.createElement("code");
      chip.className = "code-chip";
      chip.textContent = code;
      item.append(chip, " ");
    }
    const text = document.createElement("span");
    text.textContent = message;
    item.append(text);
    box.append(item);
    item.scrollIntoView({ block: "nearest" });
    return item;
  }

  /* Forms that destroy something ask first. */
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  /* Forms marked data-fetch post from the script: a refusal is shown as a message and
     what was typed stays in the form; success follows the answer's redirect. Without
     scripts the same form posts normally and the server redirects with a message. */
  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-fetch")) return;
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    if (button) button.disabled = true;
    try {
      const answer = await postJSON(form.action, new FormData(form));
      window.location.assign(answer.redirect || window.location.href);
    } catch (err) {
      document.querySelectorAll(".flash-error").forEach((old) => old.remove());
      flash("error", err.message, err.code);
      if (button) button.disabled = false;
    }
  });

  document.addEventListener("click", (event) => {
    const back = event.target.closest("[data-history-back]");
    if (back) history.back();
    // Close the tenant menu when clicking elsewhere.
    document.querySelectorAll("details.tenant-switch[open]").forEach((menu) => {
      if (!menu.contains(event.target)) menu.removeAttribute("open");
    });
  });

  /* Parts of a page that refresh themselves from a fragment URL while something is in
     flight: data-refresh-url (the fragment) and data-refresh-while (a selector that,
     while it matches inside, keeps the polling going). */
  const REFRESH_MS = 1500;
  const timers = new WeakMap();

  async function refresh(el) {
    clearTimeout(timers.get(el));
    try {
      const response = await fetch(el.dataset.refreshUrl, { credentials: "same-origin" });
      if (response.ok) {
        el.innerHTML = await response.text();
        el.dispatchEvent(new CustomEvent("devbench:refreshed", { bubbles: true }));
      }
    } catch (err) {
      /* offline for a moment: try again on the next tick */
    }
    schedule(el);
  }

  function schedule(el) {
    if (el.dataset.refreshWhile && el.querySelector(el.dataset.refreshWhile)) {
      timers.set(el, setTimeout(() => refresh(el), REFRESH_MS));
    }
  }

  document.querySelectorAll("[data-refresh-url]").forEach(schedule);

  /* The upload form checks the tenant's size limit before sending anything. */
  const upload = document.getElementById("upload-form");
  if (upload) {
    const input = upload.querySelector('input[type="file"]');
    const label = document.getElementById("upload-name");
    const error = document.getElementById("upload-error");
    const max = Number(upload.dataset.maxBytes || 0);
    const human = (n) => {
      const units = ["bytes", "KB", "MB", "GB", "TB"];
      let i = 0;
      while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
      return (i ? n.toFixed(1) : n) + " " + units[i];
    };
    const check = () => {
      const file = input.files && input.files[0];
      label.textContent = file ? file.name + " (" + human(file.size) + ")" : "Choose a file…";
      if (file && max && file.size > max) {
        error.textContent = "file_too_large: " + file.name + " is " + human(file.size) +
          "; this tenant allows files up to " + human(max) + ".";
        return false;
      }
      error.textContent = "";
      return true;
    };
    input.addEventListener("change", check);
    upload.addEventListener("submit", (event) => {
      if (!check()) event.preventDefault();
    });
  }

  /* A persistent workspace never expires: its time to live does not apply. */
  const persistent = document.getElementById("spawn-persistent");
  const ttl = document.getElementById("spawn-ttl");
  if (persistent && ttl) {
    const sync = () => { ttl.disabled = persistent.checked; };
    persistent.addEventListener("change", sync);
    sync();
  }

  window.DevBench = { postJSON, flash, refresh, csrfToken };
})();
