/** The viewer's URLs. The hub returns index.html for /viewer/*, and main.ts dispatches here. */

export type Protocol = "dzi" | "iiif";

export type Route =
  { page: "worklist"; query: string } | { page: "viewer"; slideId: string; protocol: Protocol };

export function parseRoute(location: Location | URL): Route {
  const params = new URLSearchParams(location.search);
  const match = /^\/viewer\/(.*)$/.exec(location.pathname);
  if (match) {
    return {
      page: "viewer",
      slideId: decodeURIComponent(match[1] ?? "").replace(/\/+$/, ""),
      protocol: params.get("protocol") === "iiif" ? "iiif" : "dzi",
    };
  }
  return { page: "worklist", query: params.get("q") ?? "" };
}

export function worklistUrl(query = ""): string {
  return query ? `/?${new URLSearchParams({ q: query })}` : "/";
}

export function viewerUrl(slideId: string, protocol: Protocol = "dzi"): string {
  const path = `/viewer/${encodeURIComponent(slideId)}`;
  return protocol === "dzi" ? path : `${path}?protocol=${protocol}`;
}
