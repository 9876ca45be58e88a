/** The home page: every slide the user may open, with a search box. */

import { ApiError, centreNames, listSlides, thumbnailUrl, type SlideSummary } from "./api";
import { h, mount } from "./dom";
import { formatDate, formatDimensions, formatVendor, scanResolution, searchKey } from "./format";
import { appHeader } from "./header";
import { COMPARE_MAX, COMPARE_MIN, compareUrl, viewerUrl, worklistUrl } from "./routes";
import { t } from "./strings";

const THUMBNAIL_SIZE = 160;

interface Row {
  slide: SlideSummary;
  element: HTMLTableRowElement;
  key: string;
}

/** `compareWith`: a slide to tick for comparison (the slide page's "Compare…"). */
export async function showWorklist(
  root: HTMLElement,
  initialQuery: string,
  compareWith: string | null = null,
): Promise<void> {
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
  const compare = h(
    "button",
    { type: "button", class: "compare-button", title: t.compare.buttonHint, disabled: true },
    t.compare.button(0),
  );
  const body = h("tbody");
  const table = h(
    "table",
    { class: "slides", hidden: true },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ...Object.values(t.worklist.columns).map((label) => h("th", { scope: "col" }, label)),
        // Last, under the header's Compare button.
        h("th", { scope: "col", class: "select" }, t.compare.selectColumn),
      ),
    ),
    body,
  );
  mount(
    root,
    h(
      "div",
      { class: "page worklist-page" },
      appHeader(h("h1", { class: "page-title" }, t.worklist.title), count, search, compare),
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

  // ---- choosing slides to compare: in the order ticked, at most COMPARE_MAX ----------------
  const chosen: string[] = [];
  const boxes = [...body.querySelectorAll<HTMLInputElement>("input.select-slide")];
  const showChoice = (): void => {
    compare.textContent = t.compare.button(chosen.length);
    compare.disabled = chosen.length < COMPARE_MIN;
    for (const box of boxes) box.disabled = !box.checked && chosen.length >= COMPARE_MAX;
  };
  for (const box of boxes) {
    box.addEventListener("change", () => {
      const id = box.value;
      if (box.checked && !chosen.includes(id)) chosen.push(id);
      if (!box.checked && chosen.includes(id)) chosen.splice(chosen.indexOf(id), 1);
      showChoice();
    });
    if (box.value === compareWith) {
      box.checked = true;
      chosen.push(box.value);
    }
  }
  compare.addEventListener("click", () => {
    if (chosen.length >= COMPARE_MIN)
      window.location.assign(compareUrl({ slideIds: chosen, views: null, locked: true }));
  });
  showChoice();

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
    h(
      "td",
      { class: "select" },
      ready &&
        h("input", {
          type: "checkbox",
          class: "select-slide",
          value: slide.id,
          "aria-label": t.compare.select(slide.name),
        }),
    ),
  );
  if (ready) {
    // The whole row opens the slide; the name stays a real link (keyboard, new tab).
    row.addEventListener("click", (event) => {
      if ((event.target as Element).closest("a, input, td.select")) return;
      window.location.assign(href);
    });
  }
  return row;
}
