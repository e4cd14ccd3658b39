// An independent MCP client: the official TypeScript SDK (2025-11-25 initialize handshake).
// Usage: node check.mjs <mcp-url> [workflow]   (the bearer token comes from $DEVBENCH_TOKEN)
// Prints one JSON report on stdout; exits non-zero when a check fails.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, scenario = "list"] = process.argv.slice(2);
const token = process.env.DEVBENCH_TOKEN;
const report = { protocolVersion: null, tools: [], problems: [], steps: [] };

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

async function workflow(client) {
  const ws = await call(client, "spawn", { image: "devbench/busybox:latest" });
  try {
    const run = await call(client, "exec_run", { container_id: ws.id, cmd: ["echo", "hi from js"] });
    if (run.exit_code !== 0 || !run.stdout.includes("hi from js")) {
      problem(`exec_run gave ${JSON.stringify(run)}`);
    }
  } finally {
    await call(client, "kill", { container_id: ws.id, force: true });
  }
}

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
  }
} catch (err) {
  problem(String(err && err.stack ? err.stack : err));
} finally {
  await client.close().catch(() => {});
}
process.stdout.write(JSON.stringify(report) + "\n");
process.exit(report.problems.length ? 1 : 0);
