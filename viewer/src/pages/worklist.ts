/** The home page: every slide the user may open, with a search box. */

import {
  centreNames,
  getMe,
  getSlide,
  listGrants,
  listSlides,
  PENDING_STATUSES,
  thumbnailUrl,
  type ConversionInfo,
  type Grant,
  type SlideSummary,
} from "../lib/api";
import { h, mount, setTitle } from "../lib/dom";
import { errorText } from "../lib/errors";
import {
  formatDate,
  formatDimensions,
  formatPurpose,
  formatVendor,
  scanResolution,
  searchKey,
} from "../lib/format";
import { COMPARE_MAX, COMPARE_MIN, compareUrl, viewerUrl, worklistUrl } from "../lib/routes";
import { t } from "../lib/strings";
import { appHeader } from "../panels/header";

const THUMBNAIL_SIZE = 160;
/** How often the statuses of slides being converted are asked again (only while some are). */
export const STATUS_POLL_MS = 3000;

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
  setTitle(t.worklist.title);
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
  let shared: SharedWithMe;
  try {
    [slides, centres, shared] = await Promise.all([listSlides(), centreNames(), sharedWithMe()]);
  } catch (error) {
    status.textContent = t.worklist.loadFailed(errorText(error));
    status.classList.add("error");
    return;
  }

  const rows: Row[] = slides.map((slide) => {
    const centre = centres.get(slide.centre) ?? slide.centre;
    return {
      slide,
      element: slideRow(slide, centre, sharing(slide, shared)),
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
  followConversions(rows);
}

/**
 * While some slide is queued or converting, asks the hub again every few seconds and
 * updates their status badges (a converting slide's percent comes from its detail); stops
 * once none is. Rows are neither added nor removed: a reload shows new slides.
 */
function followConversions(rows: Row[]): void {
  const byId = new Map(rows.map((row) => [row.slide.id, row]));
  const pending = (): Row[] => rows.filter((row) => PENDING_STATUSES.includes(row.slide.status));
  const poll = async (relist: boolean): Promise<void> => {
    if (!document.hidden) {
      try {
        for (const slide of relist ? await listSlides() : []) {
          const row = byId.get(slide.id);
          if (row && slide.status !== row.slide.status) {
            row.slide = slide;
            showStatus(row.element, slide, null);
          }
        }
        await Promise.all(
          pending()
            .filter((row) => row.slide.status === "converting")
            .map(async (row) => {
              const detail = await getSlide(row.slide.id);
              row.slide = detail;
              showStatus(row.element, detail, detail.conversion ?? null);
            }),
        );
      } catch {
        // The hub is restarting or unreachable: the badges stay as they were; try again.
      }
    }
    if (pending().length > 0) window.setTimeout(() => void poll(true), STATUS_POLL_MS);
  };
  // At once: a converting slide's percent is only in its detail.
  if (pending().length > 0) void poll(false);
}

/** What the worklist says of a slide another centre shares with the user. */
interface Shared {
  /** Purposes of the live grants on it (by the user's own centre's reading, FR/EN). */
  purposes: string[];
}

/**
 * Slides received through a grant, by opaque id, with the grants' purposes; an empty map
 * when the hub cannot say (the rows are still marked by their de-identified view).
 */
interface SharedWithMe {
  /** The user's centre: its de-identified slides (a teacher's) are not "shared". */
  centre: string | null;
  bySlide: Map<string, Shared>;
}

async function sharedWithMe(): Promise<SharedWithMe> {
  let grants: Grant[];
  let centre: string | null = null;
  try {
    [grants, centre] = await Promise.all([listGrants(), getMe().then((me) => me.user.centre)]);
  } catch {
    return { centre, bySlide: new Map() };
  }
  const out = new Map<string, Shared>();
  for (const grant of grants) {
    if (grant.direction !== "received" || !grant.live || !grant.slide_id) continue;
    const entry = out.get(grant.slide_id) ?? { purposes: [] };
    const purpose = formatPurpose(grant.purpose);
    if (!entry.purposes.includes(purpose)) entry.purposes.push(purpose);
    out.set(grant.slide_id, entry);
  }
  return { centre, bySlide: out };
}

/** A slide's sharing, if it is another centre's seen through a grant. */
function sharing(slide: SlideSummary, shared: SharedWithMe): Shared | null {
  if (slide.view !== "deidentified" || slide.centre === shared.centre) return null;
  return shared.bySlide.get(slide.id) ?? { purposes: [] };
}

function slideRow(slide: SlideSummary, centreName: string, shared: Shared | null): HTMLTableRowElement {
  // Slides still being converted (or whose conversion failed) open from their original.
  const viewable = slide.viewable;
  const href = viewerUrl(slide.id);
  const scan = scanResolution(slide);
  const row = h(
    "tr",
    {
      class: viewable ? "slide viewable" : "slide",
      "data-slide-id": slide.id,
      title: viewable ? t.worklist.open(slide.name) : t.worklist.notReady,
    },
    h(
      "td",
      { class: "thumb" },
      h("img", { src: thumbnailUrl(slide, THUMBNAIL_SIZE), alt: "", loading: "lazy", decoding: "async" }),
    ),
    h(
      "td",
      { class: "name" },
      viewable ? h("a", { href }, slide.name) : slide.name,
      shared && sharedBadge(centreName, shared),
    ),
    h("td", { class: "centre" }, centreName),
    h("td", { class: "vendor" }, formatVendor(slide.vendor)),
    h(
      "td",
      { class: "size" },
      formatDimensions(slide.width, slide.height),
      scan && h("div", { class: "sub" }, scan),
    ),
    h("td", { class: "status" }),
    h("td", { class: "added" }, formatDate(slide.created_at)),
    h(
      "td",
      { class: "select" },
      viewable &&
        h("input", {
          type: "checkbox",
          class: "select-slide",
          value: slide.id,
          "aria-label": t.compare.select(slide.name),
        }),
    ),
  );
  showStatus(row, slide, null);
  if (viewable) {
    // The whole row opens the slide; the name stays a real link (keyboard, new tab).
    row.addEventListener("click", (event) => {
      if ((event.target as Element).closest("a, input, td.select")) return;
      window.location.assign(href);
    });
  }
  return row;
}

function sharedBadge(centreName: string, shared: Shared): HTMLElement {
  const purposes = shared.purposes.join(", ");
  return h(
    "div",
    { class: "sub shared-with-you", title: t.share.sharedWithYouHint(centreName, purposes || null) },
    h("span", { class: "badge shared-badge" }, t.share.sharedWithYou),
    purposes && h("span", { class: "shared-purpose" }, ` ${purposes}`),
  );
}

/** The status badge of `row`: conversion states named as such, the reason of a failure in
 * its tooltip. `conversion`: the detail's, for a converting slide's percent. */
function showStatus(row: HTMLTableRowElement, slide: SlideSummary, conversion: ConversionInfo | null): void {
  let text = t.status[slide.status] ?? slide.status;
  let hint: string | undefined = slide.error ?? undefined;
  if (slide.status === "queued") {
    text = t.worklist.conversionQueued;
    hint = t.worklist.conversionPendingHint;
  } else if (slide.status === "converting") {
    const converting = conversion?.status === "converting";
    text = t.worklist.conversionProgress(converting ? conversion.percent : null);
    hint = t.worklist.conversionPendingHint;
  } else if (slide.status === "failed") {
    text = t.worklist.conversionFailed;
    hint = t.worklist.conversionFailedHint(slide.error);
  }
  const badge = h("span", { class: `badge status-${slide.status}`, title: hint }, text);
  row.querySelector("td.status")?.replaceChildren(badge);
}
