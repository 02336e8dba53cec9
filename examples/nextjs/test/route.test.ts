// The route handler against a running learner-export: LEARNER_EXPORT_URL and a Supabase-style
// access token (LEARNER_EXPORT_TOKEN) come from the environment (tests/e2e/test_nextjs_example.py, or README.md).
import assert from "node:assert/strict";
import { test } from "node:test";

import { GET } from "../app/api/admin/learners/export/route.js";

const SERVICE = process.env.LEARNER_EXPORT_URL ?? "";
const TOKEN = process.env.LEARNER_EXPORT_TOKEN ?? "";
const ADMIN_UI = "https://admin.example.com/api/admin/learners/export";

function call(query: string, headers: Record<string, string> = {}): Promise<Response> {
  return GET(new Request(`${ADMIN_UI}?${query}`, { headers }));
}

test("the environment names a running service and a token", () => {
  assert.ok(SERVICE.startsWith("http"), "LEARNER_EXPORT_URL");
  assert.ok(TOKEN.length > 20, "LEARNER_EXPORT_TOKEN");
});

test("303 to a signed link; following it downloads the CSV", async () => {
  const response = await call("format=csv&active=true&limit=25&columns=learner_id,full_name", {
    Authorization: `Bearer ${TOKEN}`,
  });
  assert.equal(response.status, 303);
  assert.equal(response.headers.get("cache-control"), "no-store");
  const location = response.headers.get("location") ?? "";
  assert.ok(location.startsWith(`${SERVICE}/v1/exports/learners/download?link=`), location);
  assert.ok(!location.includes(TOKEN), "the access token never goes into a URL");

  // As the browser would: no Authorization header, just the link.
  const download = await fetch(location);
  assert.equal(download.status, 200);
  assert.match(download.headers.get("content-type") ?? "", /^text\/csv/);
  assert.match(download.headers.get("content-disposition") ?? "",
    /^attachment; filename="learners-active-\d{8}T\d{6}Z\.csv"/);
  const text = await download.text();
  assert.ok(text.startsWith("learner_id,full_name\r\n"), text.slice(0, 80));
  assert.ok(text.length > 25 * 38, "25 rows of a UUID and a name");
});

test("a script asking for JSON gets the link to navigate to", async () => {
  const response = await call("format=csv&limit=2", {
    Authorization: `Bearer ${TOKEN}`, Accept: "application/json",
  });
  assert.equal(response.status, 200);
  const link = (await response.json()) as { url: string; expires_at: string };
  assert.ok(link.url.startsWith(`${SERVICE}/v1/exports/learners/download?link=`));
  assert.ok(Date.parse(link.expires_at) > Date.now());
  assert.equal((await fetch(link.url)).status, 200);
});

test("bom=true reaches the service: the CSV starts with a byte-order mark, for Excel", async () => {
  const response = await call("format=csv&bom=true&limit=2&columns=learner_id", {
    Authorization: `Bearer ${TOKEN}`,
  });
  assert.equal(response.status, 303);
  const download = await fetch(response.headers.get("location") ?? "");
  const bytes = new Uint8Array(await download.arrayBuffer());
  assert.deepEqual([...bytes.slice(0, 3)], [0xef, 0xbb, 0xbf]);
  assert.equal(new TextDecoder().decode(bytes.slice(3, 14)), "learner_id\r");
});

test("the session cookie works when there is no Authorization header", async () => {
  const response = await call("format=jsonl&limit=3", {
    Cookie: `theme=dark; sb-access-token=${encodeURIComponent(TOKEN)}`,
  });
  assert.equal(response.status, 303);
  const download = await fetch(response.headers.get("location") ?? "");
  const lines = (await download.text()).trim().split("\n");
  assert.equal(lines.length, 3);
  assert.ok(JSON.parse(lines[0] ?? "").learner_id);
});

test("repeated client_id and the date range reach the service", async () => {
  const clients = [crypto.randomUUID(), crypto.randomUUID()];
  const query = new URLSearchParams([["client_id", clients[0] ?? ""],
    ["client_id", clients[1] ?? ""], ["created_from", "2024-01-01"],
    ["created_to", "2025-01-01"], ["format", "xlsx"]]);
  const response = await call(query.toString(), { Authorization: `Bearer ${TOKEN}` });
  assert.equal(response.status, 303);
  const download = await fetch(response.headers.get("location") ?? "");
  assert.equal(download.status, 200);
  assert.match(download.headers.get("content-disposition") ?? "",
    /filename="learners-2-clients-2024-01-01_to_2025-01-01-\d{8}T\d{6}Z\.xlsx"/);
  const bytes = new Uint8Array(await download.arrayBuffer());
  assert.deepEqual([...bytes.slice(0, 2)], [0x50, 0x4b], "an XLSX is a zip");
});

test("the service's 4xx comes back as its JSON, same status", async () => {
  const bad = await call("format=pdf", { Authorization: `Bearer ${TOKEN}` });
  assert.equal(bad.status, 400);
  const body = (await bad.json()) as { error: string; detail: { parameter: string }[] };
  assert.equal(body.error, "invalid_parameter");
  assert.ok(body.detail.some((problem) => problem.parameter.includes("format")));

  const expired = await call("format=csv", { Authorization: "Bearer not-a-real-token" });
  assert.equal(expired.status, 401);
  assert.equal(((await expired.json()) as { error: string }).error, "unauthorized");
});

test("no session at all: 401 without asking the service", async () => {
  const response = await call("format=csv");
  assert.equal(response.status, 401);
  assert.equal(((await response.json()) as { error: string }).error, "unauthorized");
});

test("an unknown filter is refused by name", async () => {
  const response = await call("format=csv&sort=name", { Authorization: `Bearer ${TOKEN}` });
  assert.equal(response.status, 400);
  const body = (await response.json()) as { detail: { parameter: string }[] };
  assert.deepEqual(body.detail.map((problem) => problem.parameter), ["sort"]);
});

test("a service that cannot be reached: 502 JSON", async () => {
  const saved = process.env.LEARNER_EXPORT_URL;
  process.env.LEARNER_EXPORT_URL = "http://127.0.0.1:9";  // discard port: nothing listens
  try {
    const response = await call("format=csv", { Authorization: `Bearer ${TOKEN}` });
    assert.equal(response.status, 502);
    assert.equal(((await response.json()) as { error: string }).error,
      "export_service_unreachable");
  } finally {
    process.env.LEARNER_EXPORT_URL = saved;
  }
});
