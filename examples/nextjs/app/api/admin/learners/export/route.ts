/**
 * GET /api/admin/learners/export?format=xlsx&client_id=…&active=true
 * GET /api/admin/learners/export?format=csv&bom=true   (a CSV for Excel: UTF-8 with a BOM)
 *
 * The admin page links (or navigates) here with its filters. This route asks learner-export for a
 * short-lived signed link on behalf of the signed-in admin, then answers 303 See Other to it:
 * the browser downloads the file straight from learner-export, streamed, without the bytes
 * passing through Next.js and without the admin's token ever appearing in a URL. A script that
 * asks with Accept: application/json gets {"url", "expires_at"} instead, and navigates itself.
 *
 * Environment: LEARNER_EXPORT_URL, the service's base URL as this server reaches it
 * (e.g. http://learner-export:8000). The link it hands back is built from the service's
 * EXPORT_PUBLIC_URL, the address browsers reach it at.
 *
 * Only web-standard APIs (fetch, Request, Response, URL): no Next.js import is needed.
 */

/** Filters the admin page may send, as the service names them; client_id may repeat. */
const SINGLE = [
  "format", "created_from", "created_to", "active", "columns", "limit", "tz", "bom",
];
/** Booleans the service wants as JSON true/false (bom=true: a CSV that Excel opens as UTF-8). */
const BOOLEANS = ["active", "bom"];
const REPEATED = ["client_id"];
const TIMEOUT_MS = 15_000;

type Json = Record<string, unknown>;

function json(status: number, body: Json, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json", "Cache-Control": "no-store", ...headers },
  });
}

/** The Supabase access token: the admin UI's Authorization header, else the session cookie. */
export function accessToken(request: Request): string | null {
  const header = request.headers.get("authorization");
  const bearer = header?.match(/^Bearer\s+(\S+)$/i);
  if (bearer?.[1]) return bearer[1];
  for (const pair of (request.headers.get("cookie") ?? "").split(";")) {
    const [name, ...value] = pair.trim().split("=");
    if (name === "sb-access-token" && value.length) {
      const token = decodeURIComponent(value.join("="));
      if (token) return token;
    }
  }
  return null;
}

/** Whether the caller is a script (fetch with Accept: application/json), not a navigation. */
function wantsJson(request: Request): boolean {
  const accept = request.headers.get("accept") ?? "";
  return accept.includes("application/json") && !accept.includes("text/html");
}

/** The link request's JSON body from the query string; unknown names are the caller's mistake. */
export function linkRequest(query: URLSearchParams): { body: Json; unknown: string[] } {
  const body: Json = {};
  const unknown: string[] = [];
  for (const name of new Set(query.keys())) {
    if (REPEATED.includes(name)) {
      body[name] = query.getAll(name);
    } else if (SINGLE.includes(name)) {
      const value = query.get(name) ?? "";
      // Typed as the service's JSON expects; anything else goes as given, for it to refuse.
      if (BOOLEANS.includes(name) && (value === "true" || value === "false")) {
        body[name] = value === "true";
      } else if (name === "limit" && /^\d{1,12}$/.test(value)) {
        body[name] = Number(value);
      } else {
        body[name] = value;
      }
    } else {
      unknown.push(name);
    }
  }
  return { body, unknown };
}

export async function GET(request: Request): Promise<Response> {
  const service = process.env.LEARNER_EXPORT_URL;
  if (!service) {
    return json(500, { error: "not_configured", detail: "LEARNER_EXPORT_URL is not set" });
  }
  const token = accessToken(request);
  if (!token) {
    return json(401, { error: "unauthorized", detail: "sign in as an admin to export learners" });
  }
  const { body, unknown } = linkRequest(new URL(request.url).searchParams);
  if (unknown.length) {
    return json(400, {
      error: "invalid_parameter",
      detail: unknown.map((name) => ({ parameter: name, message: "unknown parameter" })),
    });
  }

  const headers: Record<string, string> = {
    Authorization: `Bearer ${token}`,
    "Content-Type": "application/json",
    Accept: "application/json",
  };
  const requestId = request.headers.get("x-request-id");
  if (requestId) headers["X-Request-Id"] = requestId;

  let answer: Response;
  try {
    answer = await fetch(`${service.replace(/\/+$/, "")}/v1/exports/learners/links`, {
      method: "POST",
      headers,
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(TIMEOUT_MS),
      cache: "no-store",
    });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return json(502, {
      error: "export_service_unreachable",
      detail: `could not reach the export service: ${reason}`,
    });
  }

  const passed: Record<string, string> = {};
  for (const name of ["retry-after", "x-request-id"]) {
    const value = answer.headers.get(name);
    if (value) passed[name] = value;
  }
  let payload: Json;
  try {
    payload = (await answer.json()) as Json;
  } catch {
    return json(502, {
      error: "export_service_error",
      detail: `the export service answered ${answer.status} without JSON`,
    });
  }
  if (answer.ok && typeof payload.url === "string") {
    // Without EXPORT_PUBLIC_URL the service answers a relative link: it is the service's, not
    // this app's, so it is made absolute against the service's address.
    const link = new URL(payload.url, `${service.replace(/\/+$/, "")}/`).toString();
    // A page whose session is in memory calls this route with fetch(): a redirect it could not
    // read would be no use to it, so it gets the link as JSON and navigates itself.
    if (wantsJson(request)) return json(200, { ...payload, url: link }, passed);
    return new Response(null, {
      status: 303,
      headers: { Location: link, "Cache-Control": "no-store", ...passed },
    });
  }
  if (answer.status >= 400 && answer.status < 500) {
    // The service's own words (bad filter, expired session, role not allowed) for the admin UI.
    return json(answer.status, payload, passed);
  }
  return json(502, { error: "export_service_error", detail: payload }, passed);
}
