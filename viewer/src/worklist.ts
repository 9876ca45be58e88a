/** The home page: every slide the user may open, with a search box. */

import { ApiError, centreNames, listSlides, thumbnailUrl, type SlideSummary } from "./api";
import { h, mount } from "./dom";
import { formatDate, formatDimensions, formatVendor, scanResolution, searchKey } from "./format";
import { appHeader } from "./header";
import { viewerUrl, worklistUrl } from "./routes";
import { t } from "./strings";

const THUMBNAIL_SIZE = 160;

interface Row {
  slide: SlideSummary;
  element: HTMLTableRowElement;
  key: string;
}

export async function showWorklist(root: HTMLElement, initialQuery: string): Promise<void> {
  document.title = `${t.worklist.title} · ${t.app.name}`;
  const status = h("p", { class: "notice", role: "status" }, t.worklist.loading);
  const search = h("input", {
    type: "search",
    class: "search",
    placeholder: t.worklist.searchPlaceholder,
    "aria-label": t.worklist.searchLabel,
    value: initialQuery,
    autocomplete: "off",
    spellcheck: "false",
  });
  const count = h("span", { class: "count" });
  const body = h("tbody");
  const table = h(
    "table",
    { class: "slides", hidden: true },
    h(
      "thead",
      {},
      h("tr", {}, ...Object.values(t.worklist.columns).map((label) => h("th", { scope: "col" }, label))),
    ),
    body,
  );
  mount(
    root,
    h(
      "div",
      { class: "page worklist-page" },
      appHeader(h("h1", { class: "page-title" }, t.worklist.title), count, search),
      h("main", { class: "worklist" }, status, table),
    ),
  );

  let slides: SlideSummary[];
  let centres: Map<string, string>;
  try {
    [slides, centres] = await Promise.all([listSlides(), centreNames()]);
  } catch (error) {
    const why = error instanceof ApiError ? error.detail : String(error);
    status.textContent = t.worklist.loadFailed(why);
    status.classList.add("error");
    return;
  }

  const rows: Row[] = slides.map((slide) => {
    const centre = centres.get(slide.centre) ?? slide.centre;
    return {
      slide,
      element: slideRow(slide, centre),
      key: searchKey(`${slide.name} ${slide.centre} ${centre}`),
    };
  });
  body.append(...rows.map((row) => row.element));

  const applyFilter = (): void => {
    const query = search.value.trim();
    const words = searchKey(query).split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const row of rows) {
      const visible = words.every((word) => row.key.includes(word));
      row.element.hidden = !visible;
      if (visible) shown += 1;
    }
    count.textContent = t.worklist.count(shown, rows.length);
    table.hidden = shown === 0;
    status.hidden = shown > 0;
    status.textContent = rows.length === 0 ? t.worklist.empty : t.worklist.noMatch(query);
    // Keep the query in the address, so "back" from a slide returns to the same list.
    history.replaceState(null, "", worklistUrl(query));
  };
  search.addEventListener("input", applyFilter);
  applyFilter();
  search.focus();
}

function slideRow(slide: SlideSummary, centreName: string): HTMLTableRowElement {
  const ready = slide.status === "ready";
  const href = viewerUrl(slide.id);
  const statusText = t.status[slide.status] ?? slide.status;
  const scan = scanResolution(slide);
  const row = h(
    "tr",
    {
      class: ready ? "slide ready" : "slide",
      "data-slide-id": slide.id,
      title: ready ? t.worklist.open(slide.name) : t.worklist.notReady,
    },
    h(
      "td",
      { class: "thumb" },
      h("img", { src: thumbnailUrl(slide, THUMBNAIL_SIZE), alt: "", loading: "lazy", decoding: "async" }),
    ),
    h("td", { class: "name" }, ready ? h("a", { href }, slide.name) : slide.name),
    h("td", { class: "centre" }, centreName),
    h("td", { class: "vendor" }, formatVendor(slide.vendor)),
    h(
      "td",
      { class: "size" },
      formatDimensions(slide.width, slide.height),
      scan && h("div", { class: "sub" }, scan),
    ),
    h(
      "td",
      { class: "status" },
      h("span", { class: `badge status-${slide.status}`, title: slide.error ?? undefined }, statusText),
    ),
    h("td", { class: "added" }, formatDate(slide.created_at)),
  );
  if (ready) {
    // The whole row opens the slide; the name stays a real link (keyboard, new tab).
    row.addEventListener("click", (event) => {
      if ((event.target as Element).closest("a")) return;
      window.location.assign(href);
    });
  }
  return row;
}
