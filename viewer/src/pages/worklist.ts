/**
 * The home page, case by case: the cases the user may see (each with its stains and its
 * slides as thumbnails), the slides other centres share with them, and their centre's slides
 * still to be linked to a case. Search, filters, sort and paging are the hub's (GET
 * /api/cases, GET /api/slides): the page asks again as they change, and keeps them in the
 * address, so that a link reproduces the list and "back" restores it.
 */

import {
  CASE_STATUSES,
  centreNames,
  getCase,
  getMe,
  getSlide,
  listCases,
  listGrants,
  listSlides,
  PENDING_STATUSES,
  thumbnailUrl,
  type CaseSummary,
  type ConversionInfo,
  type Grant,
  type Page,
  type SlideQuery,
  type SlideSummary,
} from "../lib/api";
import { h, mount, setTitle } from "../lib/dom";
import { errorText } from "../lib/errors";
import {
  formatBlock,
  formatDate,
  formatDay,
  formatDimensions,
  formatPurpose,
  formatVendor,
  scanResolution,
} from "../lib/format";
import {
  COMPARE_MAX,
  COMPARE_MIN,
  compareUrl,
  defaultOrder,
  isFiltered,
  NO_FILTERS,
  rememberWorklist,
  viewerUrl,
  WORKLIST_SORTS,
  worklistUrl,
  type WorklistFilters,
} from "../lib/routes";
import { t } from "../lib/strings";
import { appHeader } from "../panels/header";

const THUMBNAIL_SIZE = 160;
/** Cases per page, unless the address asks for another size (`?limit=`). */
export const PAGE_SIZE = 50;
/** Slides per page of the "Shared with me" and "To be linked" sections. */
export const SECTION_PAGE_SIZE = 20;
/** How long the search box waits for the typing to pause before asking the hub. */
export const SEARCH_DEBOUNCE_MS = 250;
/** How often the statuses of slides being converted are asked again (only while some are). */
export const STATUS_POLL_MS = 3000;
/** The most slide details asked for in one round of polling. */
const MAX_POLLED = 24;
/** How near the end of the list (px) the next page is asked for while scrolling. */
const SCROLL_AHEAD_PX = 400;

/** `compareWith`: a slide to tick for comparison (the slide page's "Compare…"). */
export async function showWorklist(
  root: HTMLElement,
  initial: WorklistFilters,
  compareWith: string | null = null,
): Promise<void> {
  setTitle(t.worklist.title);
  const worklist = new Worklist(root, initial, compareWith);
  await worklist.start();
}

/** What the page knows of the user and the centres once it starts. */
interface Context {
  centres: Map<string, string>;
  shared: SharedWithMe;
}

class Worklist {
  private readonly notice = h("p", { class: "notice", role: "status" }, t.worklist.loading);
  private readonly main: HTMLElement;
  private readonly filters: FilterBar;
  private readonly selection: Selection;
  private readonly conversions = new Conversions();
  private readonly cases: CaseList;
  private readonly sharedSection: SlideSection;
  private readonly unlinkedSection: SlideSection;
  private context: Context = { centres: new Map(), shared: { centre: null, bySlide: new Map() } };
  /** Bumped at each new search: answers to an older one are dropped. */
  private generation = 0;

  constructor(root: HTMLElement, initial: WorklistFilters, compareWith: string | null) {
    const compare = h(
      "button",
      { type: "button", class: "compare-button", title: t.compare.buttonHint, disabled: true },
      t.compare.button(0),
    );
    this.selection = new Selection(compare, compareWith);
    this.filters = new FilterBar(initial, (debounced) => this.search(debounced));
    const slideParts = (): SlideParts => ({
      context: this.context,
      selection: this.selection,
      conversions: this.conversions,
    });
    this.cases = new CaseList(slideParts, () => this.generation);
    this.sharedSection = new SlideSection(
      "shared",
      t.worklist.sharedTitle,
      t.worklist.sharedHint,
      slideParts,
    );
    this.unlinkedSection = new SlideSection(
      "unlinked",
      t.worklist.unlinkedTitle,
      t.worklist.unlinkedHint,
      slideParts,
    );
    this.main = h(
      "main",
      { class: "worklist", "data-state": "loading" },
      this.filters.element,
      this.notice,
      this.sharedSection.element,
      this.unlinkedSection.element,
      this.cases.element,
    );
    mount(
      root,
      h(
        "div",
        { class: "page worklist-page" },
        appHeader(h("h1", { class: "page-title" }, t.worklist.title), compare),
        this.main,
      ),
    );
  }

  async start(): Promise<void> {
    const [centres, shared] = await Promise.all([centreNames(), sharedWithMe()]);
    this.context = { centres, shared };
    this.filters.focus();
    rememberWorklist(worklistUrl(this.filters.read()));
    await this.load(this.filters.read());
  }

  /** The user changed the search or a filter: the address follows, the lists are asked again. */
  private search(filters: WorklistFilters): void {
    const url = worklistUrl(filters);
    history.replaceState(null, "", url);
    rememberWorklist(url);
    void this.load(filters);
  }

  private async load(filters: WorklistFilters): Promise<void> {
    const generation = ++this.generation;
    this.main.dataset.state = "loading";
    this.main.setAttribute("aria-busy", "true");
    // Slides: the search, stain and dates apply; a case status and a sort are the cases'.
    const slideQuery: SlideQuery = {
      q: filters.q.trim(),
      stain: filters.stain,
      since: filters.since,
      until: filters.until,
      limit: SECTION_PAGE_SIZE,
    };
    const own = this.context.shared.centre;
    const withStatus = filters.status !== "";
    const [cases, shared, unlinked] = await Promise.allSettled([
      listCases({
        q: filters.q.trim(),
        status: filters.status,
        stain: filters.stain,
        since: filters.since,
        until: filters.until,
        sort: filters.sort,
        order: filters.order,
        limit: filters.limit ?? PAGE_SIZE,
      }),
      withStatus ? Promise.resolve(null) : listSlides({ ...slideQuery, shared: true }),
      withStatus
        ? Promise.resolve(null)
        : listSlides({ ...slideQuery, linked: false, centre: own ? [own] : undefined }),
    ]);
    if (generation !== this.generation) return; // a newer search is on its way
    this.conversions.reset();
    this.selection.reset();
    this.main.removeAttribute("aria-busy");
    this.main.dataset.state = "ready";
    if (cases.status === "rejected") {
      this.notice.textContent = t.worklist.loadFailed(errorText(cases.reason));
      this.notice.classList.add("error");
      this.notice.hidden = false;
      this.cases.element.hidden = true;
      this.sharedSection.element.hidden = true;
      this.unlinkedSection.element.hidden = true;
      return;
    }
    this.notice.classList.remove("error");
    this.sharedSection.show(shared, { ...slideQuery, shared: true });
    this.unlinkedSection.show(unlinked, { ...slideQuery, linked: false, centre: own ? [own] : undefined });
    const others = this.sharedSection.total + this.unlinkedSection.total;
    const filtered = isFiltered(filters);
    this.cases.show(cases.value, filters, () => {
      if (filtered)
        return others > 0 ? t.worklist.noCaseMatch(filters.q.trim()) : t.worklist.noMatch(filters.q.trim());
      return others > 0 ? t.worklist.noCases : t.worklist.empty;
    });
    // With nothing at all to show, the one message says why.
    const nothing = cases.value.total === 0 && others === 0;
    this.notice.hidden = !nothing;
    this.notice.textContent = nothing
      ? filtered
        ? t.worklist.noMatch(filters.q.trim())
        : t.worklist.empty
      : "";
    this.cases.element.hidden = nothing;
    this.selection.show();
  }
}

// ---- search and filters ------------------------------------------------------------------

/** The bar above the lists: search box, case status, stain, received dates, sort and order. */
class FilterBar {
  readonly element: HTMLFormElement;
  private readonly search: HTMLInputElement;
  private readonly status: HTMLSelectElement;
  private readonly stain: HTMLInputElement;
  private readonly since: HTMLInputElement;
  private readonly until: HTMLInputElement;
  private readonly sort: HTMLSelectElement;
  private readonly order: HTMLSelectElement;
  private readonly clear: HTMLButtonElement;
  private readonly limit: number | null;
  private timer: number | undefined;

  constructor(
    initial: WorklistFilters,
    private readonly onChange: (filters: WorklistFilters) => void,
  ) {
    this.limit = initial.limit;
    this.search = h("input", {
      type: "search",
      class: "search",
      name: "q",
      placeholder: t.worklist.searchPlaceholder,
      "aria-label": t.worklist.searchLabel,
      value: initial.q,
      autocomplete: "off",
      spellcheck: "false",
    });
    this.status = h(
      "select",
      { class: "filter-status", name: "status", "aria-label": t.worklist.status },
      h("option", { value: "" }, t.worklist.allStatuses),
      ...CASE_STATUSES.map((s) => h("option", { value: s }, t.worklist.caseStatuses[s] ?? s)),
    );
    this.status.value = initial.status;
    this.stain = h("input", {
      type: "text",
      class: "filter-stain",
      name: "stain",
      placeholder: t.worklist.stainPlaceholder,
      "aria-label": t.worklist.stain,
      value: initial.stain,
      autocomplete: "off",
      spellcheck: "false",
      size: 12,
    });
    this.since = h("input", { type: "date", class: "filter-since", name: "since", value: initial.since });
    this.until = h("input", { type: "date", class: "filter-until", name: "until", value: initial.until });
    this.sort = h(
      "select",
      { class: "filter-sort", name: "sort", "aria-label": t.worklist.sort },
      ...WORKLIST_SORTS.map((s) => h("option", { value: s }, t.worklist.sorts[s] ?? s)),
    );
    this.sort.value = initial.sort;
    this.order = h("select", { class: "filter-order", name: "order", "aria-label": t.worklist.order });
    this.showOrders(initial.order);
    this.clear = h(
      "button",
      { type: "button", class: "filter-clear", title: t.worklist.clearHint },
      t.worklist.clear,
    );

    this.element = h(
      "form",
      { class: "worklist-filters", role: "search", "aria-label": t.worklist.filters },
      this.search,
      h(
        "div",
        { class: "filter-group" },
        this.status,
        this.stain,
        h(
          "span",
          { class: "filter-dates" },
          h("label", { class: "filter-label" }, h("span", {}, t.worklist.received), this.since),
          h("span", { class: "filter-dash", "aria-hidden": "true" }, "–"),
          this.until,
        ),
        h("span", { class: "filter-sorting" }, this.sort, this.order),
        this.clear,
      ),
    );
    this.since.setAttribute("aria-label", t.worklist.since);
    this.until.setAttribute("aria-label", t.worklist.until);
    this.element.addEventListener("submit", (event) => {
      event.preventDefault();
      this.changed(false);
    });
    // Typing waits for a pause; a choice applies at once.
    for (const box of [this.search, this.stain]) box.addEventListener("input", () => this.changed(true));
    for (const field of [this.status, this.since, this.until, this.order]) {
      field.addEventListener("change", () => this.changed(false));
    }
    this.sort.addEventListener("change", () => {
      this.showOrders(defaultOrder(this.sort.value as WorklistFilters["sort"]));
      this.changed(false);
    });
    this.clear.addEventListener("click", () => {
      this.write({ ...NO_FILTERS, limit: this.limit });
      this.changed(false);
      this.search.focus();
    });
    this.showClear();
  }

  focus(): void {
    this.search.focus();
  }

  read(): WorklistFilters {
    return {
      q: this.search.value,
      status: this.status.value,
      stain: this.stain.value.trim(),
      since: this.since.value,
      until: this.until.value,
      sort: this.sort.value as WorklistFilters["sort"],
      order: this.order.value as WorklistFilters["order"],
      limit: this.limit,
    };
  }

  private write(filters: WorklistFilters): void {
    this.search.value = filters.q;
    this.status.value = filters.status;
    this.stain.value = filters.stain;
    this.since.value = filters.since;
    this.until.value = filters.until;
    this.sort.value = filters.sort;
    this.showOrders(filters.order);
  }

  /** The order's options, named for the sort ("Newest first", "A → Z"). */
  private showOrders(selected: WorklistFilters["order"]): void {
    const names = t.worklist.orders[this.sort.value] ?? t.worklist.orders.status ?? {};
    const first = defaultOrder(this.sort.value as WorklistFilters["sort"]);
    const orders = first === "desc" ? ["desc", "asc"] : ["asc", "desc"];
    this.order.replaceChildren(...orders.map((o) => h("option", { value: o }, names[o] ?? o)));
    this.order.value = selected;
  }

  private showClear(): void {
    const filters = this.read();
    this.clear.hidden = !isFiltered(filters) && filters.sort === "date" && filters.order === "desc";
  }

  private changed(debounced: boolean): void {
    window.clearTimeout(this.timer);
    this.showClear();
    const fire = (): void => {
      this.timer = undefined;
      this.onChange(this.read());
    };
    if (debounced) this.timer = window.setTimeout(fire, SEARCH_DEBOUNCE_MS);
    else fire();
  }
}

// ---- the cases ----------------------------------------------------------------------------

/** What rendering a slide needs, wherever it is shown. */
interface SlideParts {
  context: Context;
  selection: Selection;
  conversions: Conversions;
}

/** The cases, a page at a time: "Load more", and the next page as the user scrolls near the
 * end. A list that fits on the screen waits for the button (nothing to scroll). */
class CaseList {
  readonly element: HTMLElement;
  private readonly list = h("ol", { class: "cases" });
  private readonly count = h("p", { class: "case-count", "aria-live": "polite" });
  private readonly message = h("p", { class: "cases-message" });
  private readonly more = h("button", { type: "button", class: "load-more" }, t.worklist.loadMore);
  private readonly end = h("div", { class: "list-end", "aria-hidden": "true" });
  private filters: WorklistFilters = NO_FILTERS;
  private cursor: string | null = null;
  private shown = 0;
  private total = 0;
  private loading = false;
  private nearEnd = false;

  constructor(
    private readonly parts: () => SlideParts,
    private readonly generation: () => number,
  ) {
    this.element = h(
      "section",
      { class: "worklist-section cases-section", "aria-labelledby": "cases-title" },
      h("div", { class: "section-head" }, h("h2", { id: "cases-title" }, t.worklist.casesTitle), this.count),
      this.message,
      this.list,
      this.more,
      this.end,
    );
    this.more.addEventListener("click", () => void this.loadMore());
    new IntersectionObserver(
      (entries) => {
        this.nearEnd = entries.some((entry) => entry.isIntersecting);
        this.maybeLoadMore();
      },
      { rootMargin: `0px 0px ${SCROLL_AHEAD_PX}px 0px` },
    ).observe(this.end);
    window.addEventListener("scroll", () => this.maybeLoadMore(), { passive: true });
  }

  show(page: Page<CaseSummary>, filters: WorklistFilters, emptyText: () => string): void {
    this.filters = filters;
    this.list.replaceChildren();
    this.shown = 0;
    this.append(page);
    this.message.hidden = page.total > 0;
    this.message.textContent = page.total > 0 ? "" : emptyText();
  }

  private append(page: Page<CaseSummary>): void {
    const parts = this.parts();
    this.list.append(...page.items.map((c) => caseRow(c, parts)));
    this.shown += page.items.length;
    this.total = page.total;
    this.cursor = page.next_cursor;
    this.count.textContent = t.worklist.caseCount(this.shown > 0 ? 1 : 0, this.shown, this.total);
    this.more.hidden = this.cursor === null;
  }

  /** The next page, when the user scrolled near the end of the list. */
  private maybeLoadMore(): void {
    if (!this.nearEnd || this.cursor === null || this.loading || window.scrollY <= 0) return;
    void this.loadMore();
  }

  async loadMore(): Promise<void> {
    if (this.cursor === null || this.loading) return;
    const generation = this.generation();
    const filters = this.filters;
    this.loading = true;
    this.more.disabled = true;
    this.more.textContent = t.worklist.loadingMore;
    try {
      const page = await listCases({
        q: filters.q.trim(),
        status: filters.status,
        stain: filters.stain,
        since: filters.since,
        until: filters.until,
        sort: filters.sort,
        order: filters.order,
        limit: filters.limit ?? PAGE_SIZE,
        cursor: this.cursor,
      });
      if (generation !== this.generation()) return;
      this.append(page);
      this.parts().selection.show();
    } catch (error) {
      this.message.hidden = false;
      this.message.textContent = t.worklist.loadFailed(errorText(error));
    } finally {
      this.loading = false;
      this.more.disabled = false;
      this.more.textContent = t.worklist.loadMore;
    }
    // Still at the end (a tall screen): the next one too.
    window.requestAnimationFrame(() => {
      const box = this.end.getBoundingClientRect();
      this.nearEnd = box.top < window.innerHeight + SCROLL_AHEAD_PX;
      this.maybeLoadMore();
    });
  }
}

function caseRow(c: CaseSummary, parts: SlideParts): HTMLLIElement {
  const { centres, shared } = parts.context;
  const otherCentre = shared.centre !== null && c.centre !== shared.centre;
  const centreName = centres.get(c.centre) ?? c.centre;
  const received = c.received_on
    ? t.worklist.receivedOn(formatDay(c.received_on))
    : t.worklist.receivedIn(c.received_year);
  const about = [c.organ, c.specimen_type].filter(Boolean).join(" · ");
  const slides = h("ul", { class: "case-slides" });
  const showSlides = (list: SlideSummary[]): void => {
    slides.replaceChildren(...list.map((slide) => caseSlide(slide, parts)));
    if (list.length === 0) slides.append(h("li", { class: "case-no-slides" }, t.worklist.noSlides));
  };
  showSlides(c.slides);
  const viewable = c.slides.filter((s) => s.viewable).slice(0, COMPARE_MAX);
  const head = h(
    "div",
    { class: "case-head" },
    h(
      "div",
      { class: "case-title" },
      h("h3", { class: "case-reference" }, c.reference),
      h(
        "span",
        { class: `badge case-status case-${c.status}` },
        t.worklist.caseStatuses[c.status] ?? c.status,
      ),
    ),
    about && h("p", { class: "case-about" }, about),
    h(
      "p",
      { class: "case-facts" },
      h("span", { class: "case-received" }, received),
      ` · ${t.worklist.slideCount(c.slide_count)}`,
      otherCentre ? ` · ${centreName}` : "",
    ),
    otherCentre && c.view === "deidentified" && sharedBadge(centreName, { purposes: [] }),
    c.stains.length > 0 &&
      h(
        "ul",
        { class: "stains", "aria-label": t.worklist.stain },
        ...c.stains.map((stain) => h("li", { class: "chip" }, stain)),
      ),
    viewable.length >= COMPARE_MIN &&
      h(
        "a",
        {
          class: "case-compare",
          href: compareUrl({ slideIds: viewable.map((s) => s.id), views: null, locked: true }),
          title: t.worklist.sideBySideHint(viewable.length),
        },
        t.worklist.sideBySide,
      ),
  );
  const row = h("li", { class: "case", "data-case-id": c.id }, head, slides);
  if (c.slide_count > c.slides.length) {
    const all = h(
      "button",
      { type: "button", class: "case-all-slides" },
      t.worklist.moreSlides(c.slide_count),
    );
    all.addEventListener("click", () => {
      all.disabled = true;
      void getCase(c.id).then(
        (whole) => {
          showSlides(whole.slides);
          parts.selection.show();
          all.remove();
        },
        () => (all.disabled = false),
      );
    });
    row.append(all);
  }
  return row;
}

/** A slide of a case: its thumbnail (a link to it), its stain and block under it. */
function caseSlide(slide: SlideSummary, parts: SlideParts): HTMLLIElement {
  const block = formatBlock(slide);
  const image = h("img", {
    src: thumbnailUrl(slide, THUMBNAIL_SIZE),
    alt: "",
    loading: "lazy",
    decoding: "async",
  });
  const status = h("span", { class: "case-slide-status" });
  const label = [slide.stain, block && t.placement.blockOf(block)].filter(Boolean).join(" · ");
  const picture = slide.viewable
    ? h(
        "a",
        { class: "case-slide-link", href: viewerUrl(slide.id), title: t.worklist.open(slide.name) },
        image,
      )
    : h("span", { class: "case-slide-link", title: t.worklist.notReady }, image);
  picture.setAttribute("aria-label", `${t.worklist.open(slide.name)}${label ? ` (${label})` : ""}`);
  const item = h(
    "li",
    { class: "case-slide", "data-slide-id": slide.id },
    picture,
    status,
    slide.viewable && parts.selection.box(slide, "case-slide-select"),
    h(
      "div",
      { class: "case-slide-caption" },
      h(
        "span",
        { class: slide.stain ? "case-slide-stain" : "case-slide-stain none" },
        slide.stain ?? t.worklist.noStain,
      ),
      block && h("span", { class: "case-slide-block" }, block),
    ),
  );
  parts.conversions.add(slide, status, true);
  return item;
}

// ---- "Shared with me" and "To be linked": slides in a table --------------------------------

class SlideSection {
  readonly element: HTMLElement;
  total = 0;
  private readonly body = h("tbody");
  private readonly table: HTMLTableElement;
  private readonly count = h("span", { class: "section-count" });
  private readonly message = h("p", { class: "section-message" });
  private readonly more = h("button", { type: "button", class: "load-more" }, t.worklist.loadMore);
  private query: SlideQuery = {};
  private cursor: string | null = null;
  private shown = 0;

  constructor(
    name: string,
    title: string,
    hint: string,
    private readonly parts: () => SlideParts,
  ) {
    this.table = h(
      "table",
      { class: "slides" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ...Object.entries(t.worklist.columns).map(([key, label]) =>
            h("th", { scope: "col", class: key }, label),
          ),
          // Last, under the header's Compare button.
          h("th", { scope: "col", class: "select" }, t.compare.selectColumn),
        ),
      ),
      this.body,
    );
    this.element = h(
      "section",
      { class: `worklist-section ${name}-section`, hidden: true, "aria-labelledby": `${name}-title` },
      h("div", { class: "section-head" }, h("h2", { id: `${name}-title` }, title), this.count),
      h("p", { class: "section-hint" }, hint),
      this.message,
      h("div", { class: "table-frame" }, this.table),
      this.more,
    );
    this.more.addEventListener("click", () => void this.loadMore());
  }

  /** The first page (null: not asked, the section stays hidden). */
  show(result: PromiseSettledResult<Page<SlideSummary> | null>, query: SlideQuery): void {
    this.query = query;
    this.body.replaceChildren();
    this.shown = 0;
    this.total = 0;
    this.cursor = null;
    this.message.hidden = true;
    if (result.status === "rejected") {
      this.element.hidden = false;
      this.table.hidden = true;
      this.more.hidden = true;
      this.count.textContent = "";
      this.message.hidden = false;
      this.message.textContent = t.worklist.sectionFailed(errorText(result.reason));
      return;
    }
    if (result.value === null || result.value.total === 0) {
      this.element.hidden = true;
      return;
    }
    this.element.hidden = false;
    this.table.hidden = false;
    this.append(result.value);
  }

  private append(page: Page<SlideSummary>): void {
    const parts = this.parts();
    this.body.append(...page.items.map((slide) => slideRow(slide, parts)));
    this.shown += page.items.length;
    this.total = page.total;
    this.cursor = page.next_cursor;
    this.count.textContent = t.worklist.sectionCount(this.shown, this.total);
    this.more.hidden = this.cursor === null;
  }

  private async loadMore(): Promise<void> {
    if (this.cursor === null) return;
    this.more.disabled = true;
    this.more.textContent = t.worklist.loadingMore;
    const query = this.query;
    try {
      const page = await listSlides({ ...query, cursor: this.cursor });
      if (query !== this.query) return; // another search since
      this.append(page);
      this.parts().selection.show();
    } catch (error) {
      this.message.hidden = false;
      this.message.textContent = t.worklist.sectionFailed(errorText(error));
    } finally {
      this.more.disabled = false;
      this.more.textContent = t.worklist.loadMore;
    }
  }
}

function slideRow(slide: SlideSummary, parts: SlideParts): HTMLTableRowElement {
  const { centres, shared } = parts.context;
  const centreName = centres.get(slide.centre) ?? slide.centre;
  // Slides still being converted (or whose conversion failed) open from their original.
  const viewable = slide.viewable;
  const href = viewerUrl(slide.id);
  const scan = scanResolution(slide);
  const block = formatBlock(slide);
  const place = [
    slide.case_reference && t.placement.caseOf(slide.case_reference),
    block && t.placement.blockOf(block),
    slide.stain,
  ].filter(Boolean);
  const sharedWith = sharing(slide, shared);
  const status = h("td", { class: "status" });
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
      place.length > 0 && h("div", { class: "sub slide-place" }, place.join(" · ")),
      sharedWith && sharedBadge(centreName, sharedWith),
    ),
    h("td", { class: "centre" }, centreName),
    h("td", { class: "vendor" }, formatVendor(slide.vendor)),
    h(
      "td",
      { class: "size" },
      formatDimensions(slide.width, slide.height),
      scan && h("div", { class: "sub" }, scan),
    ),
    status,
    h("td", { class: "added" }, formatDate(slide.created_at)),
    h("td", { class: "select" }, viewable && parts.selection.box(slide, "")),
  );
  parts.conversions.add(slide, status, false);
  if (viewable) {
    // The whole row opens the slide; the name stays a real link (keyboard, new tab).
    row.addEventListener("click", (event) => {
      if ((event.target as Element).closest("a, input, td.select")) return;
      window.location.assign(href);
    });
  }
  return row;
}

// ---- choosing slides to compare: in the order ticked, at most COMPARE_MAX --------------------

class Selection {
  private readonly chosen: string[] = [];
  private boxes: HTMLInputElement[] = [];

  constructor(
    private readonly button: HTMLButtonElement,
    compareWith: string | null,
  ) {
    // Ticked from the start, shown on this page or not: the slide page sent it.
    if (compareWith) this.chosen.push(compareWith);
    button.addEventListener("click", () => {
      if (this.chosen.length >= COMPARE_MIN) {
        window.location.assign(compareUrl({ slideIds: this.chosen, views: null, locked: true }));
      }
    });
  }

  /** A box ticking `slide`, kept in step with the others of the page (one slide may be
   * shown twice: in its case and as shared). */
  box(slide: SlideSummary, className: string): HTMLInputElement {
    const box = h("input", {
      type: "checkbox",
      class: `select-slide ${className}`.trim(),
      value: slide.id,
      "aria-label": t.compare.select(slide.name),
      title: t.compare.select(slide.name),
    });
    box.checked = this.chosen.includes(slide.id);
    box.addEventListener("change", () => {
      const at = this.chosen.indexOf(slide.id);
      if (box.checked && at < 0) this.chosen.push(slide.id);
      if (!box.checked && at >= 0) this.chosen.splice(at, 1);
      this.show();
    });
    this.boxes.push(box);
    return box;
  }

  /** The lists are drawn again: their boxes go. */
  reset(): void {
    this.boxes = [];
  }

  show(): void {
    this.boxes = this.boxes.filter((box) => box.isConnected);
    this.button.textContent = t.compare.button(this.chosen.length);
    this.button.disabled = this.chosen.length < COMPARE_MIN;
    const full = this.chosen.length >= COMPARE_MAX;
    for (const box of this.boxes) {
      box.checked = this.chosen.includes(box.value);
      box.disabled = !box.checked && full;
    }
  }
}

// ---- conversion statuses ------------------------------------------------------------------

interface ShownSlide {
  slide: SlideSummary;
  /** Where its badge goes: a table cell, or a thumbnail's corner (`compact`: no badge for a
   * ready slide there). */
  host: HTMLElement;
  compact: boolean;
}

/**
 * The status badges of the slides on the page. While some slide shown is queued or
 * converting, asks the hub for those slides again every few seconds (a converting slide's
 * percent is in its detail) and updates their badges; stops once none is.
 */
class Conversions {
  private shown = new Map<string, ShownSlide[]>();
  private timer: number | undefined;
  private polling = false;

  add(slide: SlideSummary, host: HTMLElement, compact: boolean): void {
    showStatus(host, slide, null, compact);
    const views = this.shown.get(slide.id) ?? [];
    views.push({ slide, host, compact });
    this.shown.set(slide.id, views);
    // At once (once the page is drawn): a converting slide's percent is only in its detail.
    this.schedule(0);
  }

  /** The lists are drawn again: the slides shown are those added from now on. */
  reset(): void {
    this.shown = new Map();
  }

  private pending(): string[] {
    return [...this.shown.entries()]
      .filter(([, views]) =>
        views.some((v) => v.host.isConnected && PENDING_STATUSES.includes(v.slide.status)),
      )
      .map(([id]) => id);
  }

  private schedule(delay: number): void {
    if (this.timer !== undefined || this.polling) return;
    this.timer = window.setTimeout(() => void this.poll(), delay);
  }

  private async poll(): Promise<void> {
    this.timer = undefined;
    const ids = this.pending();
    if (ids.length === 0) return;
    this.polling = true;
    if (!document.hidden) {
      await Promise.allSettled(
        ids.slice(0, MAX_POLLED).map(async (id) => {
          const detail = await getSlide(id);
          for (const view of this.shown.get(id) ?? []) {
            view.slide = detail;
            showStatus(view.host, detail, detail.conversion ?? null, view.compact);
          }
        }),
      );
      // A slide the hub cannot answer for (restarting, unreachable) keeps its badge; next round.
    }
    this.polling = false;
    if (this.pending().length > 0) this.schedule(STATUS_POLL_MS);
  }
}

/** The status badge in `host`: conversion states named as such, the reason of a failure in
 * its tooltip. `conversion`: the detail's, for a converting slide's percent. */
function showStatus(
  host: HTMLElement,
  slide: SlideSummary,
  conversion: ConversionInfo | null,
  compact: boolean,
): void {
  if (compact && slide.status === "ready") {
    host.replaceChildren();
    return;
  }
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
  host.replaceChildren(h("span", { class: `badge status-${slide.status}`, title: hint }, text));
}

// ---- what other centres share with the user ------------------------------------------------

/** What the worklist says of a slide another centre shares with the user. */
interface Shared {
  /** Purposes of the live grants on it (by the user's own centre's reading, FR/EN). */
  purposes: string[];
}

/**
 * Slides received through a grant, by opaque id, with the grants' purposes; an empty map
 * when the hub cannot say (the rows are still marked by their de-identified view). A case
 * shared whole is marked by its view alone (its grant is not listed by case to the grantee).
 */
interface SharedWithMe {
  /** The user's centre: its de-identified slides (a teacher's) are not "shared". */
  centre: string | null;
  bySlide: Map<string, Shared>;
}

async function sharedWithMe(): Promise<SharedWithMe> {
  let centre: string | null = null;
  try {
    centre = (await getMe()).user.centre;
  } catch {
    // Not signed in: the lists' own requests send the user to the login page.
  }
  let grants: Grant[];
  try {
    grants = await listGrants();
  } catch {
    return { centre, bySlide: new Map() };
  }
  const bySlide = new Map<string, Shared>();
  for (const grant of grants) {
    if (grant.direction !== "received" || !grant.live || !grant.slide_id) continue;
    const entry = bySlide.get(grant.slide_id) ?? { purposes: [] };
    const purpose = formatPurpose(grant.purpose);
    if (!entry.purposes.includes(purpose)) entry.purposes.push(purpose);
    bySlide.set(grant.slide_id, entry);
  }
  return { centre, bySlide };
}

/** A slide's sharing, if it is another centre's seen through a grant. */
function sharing(slide: SlideSummary, shared: SharedWithMe): Shared | null {
  if (slide.view !== "deidentified" || slide.centre === shared.centre) return null;
  return shared.bySlide.get(slide.id) ?? { purposes: [] };
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
