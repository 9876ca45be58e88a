/**
 * The hub's errors, decoded in one place. The hub answers a refusal as JSON `{"detail": …}`:
 * `detail` a string (exchange/web/errors.py), or, as FastAPI sends validation errors by
 * default, a list of pydantic errors (`{"loc": […], "msg": "…"}`).
 */

import { t } from "./strings";

/** A refusal by the hub (`status` ≥ 400, `detail` its message) or, with status 0, no answer. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly detail: string,
  ) {
    super(detail);
    this.name = "ApiError";
  }

  get notFound(): boolean {
    return this.status === 404;
  }
}

/** Too many failed logins from here or for this name: wait `retryAfter` seconds. */
export class LoginThrottled extends ApiError {
  constructor(readonly retryAfter: number) {
    super(429, "too many failed logins");
  }
}

/** The reason an error body gives, or null when it gives none (not `{"detail": …}`). */
export function detailOf(body: unknown): string | null {
  if (!body || typeof body !== "object" || !("detail" in body)) return null;
  const detail = body.detail;
  if (typeof detail === "string") return detail;
  if (!Array.isArray(detail)) return null;
  // Pydantic's: "username: Field required; password: Field required".
  const messages = detail.flatMap((error: unknown): string[] => {
    if (!error || typeof error !== "object" || !("msg" in error) || typeof error.msg !== "string") return [];
    const loc = "loc" in error && Array.isArray(error.loc) ? error.loc : [];
    // The first element says where the field was (body, query, path…): not worth showing.
    const field = loc.slice(loc.length > 1 ? 1 : 0).join(".");
    return [field ? `${field}: ${error.msg}` : error.msg];
  });
  return messages.length > 0 ? messages.join("; ") : null;
}

/** The ApiError for a refused answer: the hub's reason, else its status line ("HTTP 502"). */
export async function apiErrorOf(response: Response): Promise<ApiError> {
  let detail: string | null = null;
  try {
    detail = detailOf(await response.json());
  } catch {
    // Not JSON (a proxy's error page): keep the status line.
  }
  return new ApiError(response.status, detail ?? t.errors.http(response.status));
}

/** What a page says of a failure: the hub's reason for an ApiError, else the error as text. */
export function errorText(error: unknown): string {
  return error instanceof ApiError ? error.detail : String(error);
}
