/* DevBench web UI: small canvas charts (no library): a workspace's live resource usage,
   and a tenant's usage per day. Data comes from JSON endpoints or <script type="application/json">. */
(function () {
  "use strict";

  const COLORS = { cpu: "#2563eb", mem: "#16a34a", pids: "#d97706", bar: "#2563eb" };

  function sizeCanvas(canvas) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || canvas.width;
    const height = canvas.clientHeight || canvas.height;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    return { ctx, width, height };
  }

  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return (i ? n.toFixed(1) : n) + " " + units[i];
  }

  /* --- live stats of a workspace ------------------------------------------------- */
  function liveStats(section) {
    const url = section.dataset.statsUrl;
    const canvas = section.querySelector("canvas");
    const figure = (name) => section.querySelector('[data-figure="' + name + '"]');
    const points = []; // {cpu, mem, pids}
    const keep = 60;
    let stopped = false;

    function draw() {
      const { ctx, width, height } = sizeCanvas(canvas);
      ctx.clearRect(0, 0, width, height);
      ctx.strokeStyle = "#e5e7eb";
      ctx.lineWidth = 1;
      for (let y = 0; y <= 4; y += 1) {
        const py = Math.round((height - 1) * y / 4) + 0.5;
        ctx.beginPath(); ctx.moveTo(0, py); ctx.lineTo(width, py); ctx.stroke();
      }
      const maxPids = Math.max(8, ...points.map((p) => p.pids));
      const series = [
        ["cpu", (p) => Math.min(p.cpu, 100) / 100],
        ["mem", (p) => Math.min(p.mem, 100) / 100],
        ["pids", (p) => p.pids / maxPids],
      ];
      for (const [name, scale] of series) {
        ctx.strokeStyle = COLORS[name];
        ctx.lineWidth = 2;
        ctx.beginPath();
        points.forEach((p, i) => {
          const x = width - (points.length - 1 - i) * (width / (keep - 1));
          const y = height - 2 - scale(p) * (height - 4);
          if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
        });
        ctx.stroke();
      }
    }

    async function tick() {
      if (stopped) return;
      try {
        const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
        const data = await response.json();
        if (!response.ok) {
          stopped = response.status === 409 || response.status === 404; // no longer running
          section.dataset.error = data.code || "";
        } else {
          points.push({ cpu: data.cpu_percent, mem: data.memory_percent, pids: data.pids });
          if (points.length > keep) points.shift();
          figure("cpu").textContent = data.cpu_percent.toFixed(1) + " %";
          figure("mem").textContent = bytes(data.memory_used_bytes) + " / " + bytes(data.memory_limit_bytes);
          figure("pids").textContent = String(data.pids);
          draw();
        }
      } catch (err) {
        section.dataset.error = "network";
      }
      if (!stopped) window.setTimeout(tick, 2000);
    }
    tick();
  }

  /* --- usage per day ------------------------------------------------------------- */
  function usageChart(box) {
    const source = document.getElementById(box.dataset.source);
    if (!source) return;
    const days = JSON.parse(source.textContent);
    const canvas = box.querySelector("canvas");
    const select = box.querySelector("select");

    function draw() {
      const field = select ? select.value : "workspace_seconds_running";
      const { ctx, width, height } = sizeCanvas(canvas);
      ctx.clearRect(0, 0, width, height);
      const values = days.map((d) => Number(d[field]) || 0);
      const max = Math.max(1, ...values);
      const slot = width / Math.max(1, values.length);
      ctx.fillStyle = COLORS.bar;
      values.forEach((v, i) => {
        const h = (v / max) * (height - 20);
        ctx.fillRect(i * slot + 2, height - 16 - h, Math.max(1, slot - 4), h);
      });
      ctx.fillStyle = "#6b7280";
      ctx.font = "11px system-ui, sans-serif";
      days.forEach((d, i) => {
        if (i % Math.ceil(days.length / 10) === 0) ctx.fillText(d.day.slice(5), i * slot + 2, height - 3);
      });
      box.querySelector("[data-max]").textContent = "max " + (field.indexOf("bytes") >= 0 ? bytes(max) : max.toLocaleString());
    }
    if (select) select.addEventListener("change", draw);
    draw();
  }

  document.addEventListener("DOMContentLoaded", function () {
    const live = document.getElementById("live-stats");
    if (live) liveStats(live);
    document.querySelectorAll("[data-usage-chart]").forEach(usageChart);
  });
})();
