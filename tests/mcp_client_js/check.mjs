// An independent MCP client: the official TypeScript SDK (2025-11-25 initialize handshake).
// Usage: node check.mjs <mcp-url> [list|workflow|errors]   (the bearer token comes from $DEVBENCH_TOKEN)
// Prints one JSON report on stdout; exits non-zero when a check fails.
// "errors" calls a failing tool of each app: the SDK must hand back the error result
// (isError, the {code, message, extra} body as JSON text) instead of throwing.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const [url, scenario = "list"] = process.argv.slice(2);
const token = process.env.DEVBENCH_TOKEN;
const report = {
  sdkVersion: null,
  protocolVersion: null,
  tools: [],
  problems: [],
  steps: [],
  errors: {},
};

function problem(text) {
  report.problems.push(text);
}

async function call(client, name, args) {
  const result = await client.callTool({ name, arguments: args });
  report.steps.push({ name, isError: Boolean(result.isError), structured: result.structuredContent });
  if (result.isError) {
    throw new Error(`${name} failed: ${JSON.stringify(result.structuredContent)}`);
  }
  return result.structuredContent;
}

// A call that must fail: returns the error body the client reads from the text content.
async function failing(client, name, args) {
  const result = await client.callTool({ name, arguments: args });
  if (!result.isError) {
    throw new Error(`${name} did not fail: ${JSON.stringify(result)}`);
  }
  const text = result.content?.find((c) => c.type === "text")?.text;
  const body = JSON.parse(text);
  if (typeof body.code !== "string" || typeof body.message !== "string") {
    problem(`${name}: no code and message in ${text}`);
  }
  report.steps.push({ name, isError: true, code: body.code });
  return body;
}

async function errors(client) {
  const ws = await call(client, "spawn", { image: "devbench/busybox:latest" });
  try {
    report.errors.workspaces = await failing(client, "spawn", { image: "elsewhere/forbidden:1" });
    report.errors.files = await failing(client, "fs_read", {
      container_id: ws.id,
      path: "/etc/passwd",
    });
    report.errors.execution = await failing(client, "exec_poll", { exec_id: "ex_doesnotexist" });
    report.errors.tenants = await failing(client, "system_status", { unexpected: true });
    report.errors.system = await failing(client, "garbage_collect", {});
  } finally {
    await call(client, "kill", { container_id: ws.id, force: true });
  }
}

async function workflow(client) {
  const ws = await call(client, "spawn", { image: "devbench/busybox:latest" });
  try {
    const run = await call(client, "exec_run", { container_id: ws.id, cmd: ["echo", "hi from js"] });
    if (run.exit_code !== 0 || !run.stdout.includes("hi from js")) {
      problem(`exec_run gave ${JSON.stringify(run)}`);
    }
    await call(client, "exec_run", { container_id: ws.id, cmd: ["true"] });
    // The list contract: a page, then the rest through next_cursor, nothing twice.
    const first = await call(client, "list_execs", { container_id: ws.id, limit: 1 });
    const rest = await call(client, "list_execs", {
      container_id: ws.id,
      limit: 1,
      cursor: first.next_cursor,
    });
    const ids = [...first.items, ...rest.items].map((e) => e.exec_id);
    if (!first.has_more || rest.has_more || rest.next_cursor !== null || new Set(ids).size !== 2) {
      problem(`list_execs pages: ${JSON.stringify({ first, rest })}`);
    }
    report.pages = ids.length;
  } finally {
    await call(client, "kill", { container_id: ws.id, force: true });
  }
}

// The SDK version actually loaded (its package.json is not an export, so resolve a file beside it).
const sdkEntry = createRequire(import.meta.url).resolve("@modelcontextprotocol/sdk/client/index.js");
const sdkPackage = sdkEntry.slice(0, sdkEntry.lastIndexOf("/dist/")) + "/package.json";
report.sdkVersion = JSON.parse(readFileSync(sdkPackage, "utf8")).version;

const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const client = new Client({ name: "devbench-js-check", version: "1.0.0" });
try {
  await client.connect(transport);
  report.protocolVersion = transport.protocolVersion ?? null;
  const { tools } = await client.listTools();
  for (const tool of tools) {
    report.tools.push(tool.name);
    if (!tool.description || tool.description.trim().length < 40) {
      problem(`${tool.name}: no useful description`);
    }
    if (!tool.inputSchema || tool.inputSchema.type !== "object") {
      problem(`${tool.name}: no object input schema`);
    }
    if (!tool.annotations || typeof tool.annotations.readOnlyHint !== "boolean") {
      problem(`${tool.name}: no behaviour hints`);
    }
  }
  if (scenario === "workflow") {
    await workflow(client);
  } else if (scenario === "errors") {
    await errors(client);
  }
} catch (err) {
  problem(String(err && err.stack ? err.stack : err));
} finally {
  await client.close().catch(() => {});
}
process.stdout.write(JSON.stringify(report) + "\n");
process.exit(report.problems.length ? 1 : 0);
