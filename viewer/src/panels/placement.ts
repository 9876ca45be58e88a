/**
 * The slide page's case line ("Case B26-00123 · Block A1 · HE") and, for a user who may link
 * slides (pathologists, residents, technicians, centre admins) on a slide of their own centre
 * seen in full, a small form to set the slide's case, block and stain (PUT
 * /api/slides/{id}/case). The hub decides; the button is only hidden from users it would
 * refuse anyway, and a refusal is shown with the hub's own reason.
 */

import { getMe, placeSlide, type Placement, type SlideDetail, type SlideSummary } from "../lib/api";
import { h } from "../lib/dom";
import { errorText } from "../lib/errors";
import { formatBlock } from "../lib/format";
import { t } from "../lib/strings";

/** exchange/access/policy.py's CASE_ROLES. */
export const CASE_ROLES = ["pathologist", "resident", "technician", "centre_admin"];

/** "Case B26-00123 · Block A1 · HE", as much of it as is known; null when nothing is. */
export function placementText(slide: SlideSummary): string | null {
  const block = formatBlock(slide);
  const parts = [
    slide.case_reference && t.placement.caseOf(slide.case_reference),
    block && t.placement.blockOf(block),
    slide.stain,
  ].filter(Boolean);
  return parts.length > 0 ? parts.join(" · ") : null;
}

/** The case line and its "edit" button; `slide` is updated in place once a change is saved
 * (the page's next / previous slide then follow its new case). */
export function placementLine(slide: SlideDetail): HTMLElement {
  const text = h("span", { class: "slide-case-text" });
  const edit = h(
    "button",
    {
      type: "button",
      class: "placement-edit",
      title: t.placement.editHint,
      "aria-label": t.placement.edit,
      hidden: true,
    },
    "✎",
  );
  // Followed by the slide's other facts: the separator goes with it.
  const line = h("span", { class: "slide-case" }, text, edit, h("span", { class: "slide-case-sep" }, "·"));
  let editable = false;
  const show = (): void => {
    const known = placementText(slide);
    text.textContent = known ?? (editable ? t.placement.noCase : "");
    text.classList.toggle("none", known === null);
    line.hidden = known === null && !editable;
  };
  show();
  if (slide.view !== "deidentified") {
    getMe().then(
      (me) => {
        editable = me.user.centre === slide.centre && me.user.roles.some((r) => CASE_ROLES.includes(r));
        edit.hidden = !editable;
        show();
      },
      () => {
        // Not signed in: the page's own requests send the user to the login page.
      },
    );
  }
  let dialog: PlacementDialog | null = null;
  edit.addEventListener("click", () => {
    dialog ??= new PlacementDialog(slide, show);
    dialog.open();
  });
  return line;
}

class PlacementDialog {
  private readonly element: HTMLDialogElement;
  private readonly form: HTMLFormElement;
  private readonly fields: Record<"case_reference" | "part" | "block" | "level" | "stain", HTMLInputElement>;
  private readonly submit: HTMLButtonElement;
  private readonly message: HTMLElement;

  constructor(
    private readonly slide: SlideDetail,
    private readonly onSaved: () => void,
  ) {
    const input = (name: string, maxlength: number, placeholder?: string): HTMLInputElement =>
      h("input", {
        type: "text",
        name,
        class: `placement-${name.replace("_", "-")}`,
        maxlength,
        placeholder,
        autocomplete: "off",
        spellcheck: "false",
      });
    this.fields = {
      case_reference: input("case_reference", 100, t.placement.referencePlaceholder),
      part: input("part", 20),
      block: input("block", 20),
      level: input("level", 20),
      stain: input("stain", 100, t.placement.stainPlaceholder),
    };
    const field = (label: string, control: HTMLInputElement, wide = false): HTMLElement =>
      h("label", { class: wide ? "placement-field wide" : "placement-field" }, h("span", {}, label), control);
    this.submit = h("button", { type: "submit", class: "placement-save" }, t.placement.save);
    const cancel = h("button", { type: "button", class: "placement-cancel" }, t.placement.cancel);
    this.message = h("p", { class: "placement-message", role: "status" });
    this.form = h(
      "form",
      { class: "placement-form" },
      field(t.placement.reference, this.fields.case_reference, true),
      field(t.placement.part, this.fields.part),
      field(t.placement.block, this.fields.block),
      field(t.placement.level, this.fields.level),
      field(t.placement.stain, this.fields.stain, true),
      this.message,
      h("div", { class: "placement-actions" }, this.submit, cancel),
    );
    this.element = h(
      "dialog",
      { class: "placement-dialog", "aria-labelledby": "placement-title" },
      h("h2", { id: "placement-title" }, t.placement.title),
      h("p", { class: "placement-intro" }, t.placement.intro),
      this.form,
    );
    cancel.addEventListener("click", () => this.element.close());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.save();
    });
    document.body.append(this.element);
  }

  open(): void {
    for (const [name, control] of Object.entries(this.fields)) {
      control.value = this.slide[name as keyof typeof this.fields] ?? "";
    }
    this.message.textContent = "";
    this.message.classList.remove("error");
    this.element.showModal();
    this.fields.case_reference.focus();
  }

  private async save(): Promise<void> {
    const value = (control: HTMLInputElement): string | null => control.value.trim() || null;
    const placement: Placement = {
      case_reference: value(this.fields.case_reference),
      part: value(this.fields.part),
      block: value(this.fields.block),
      level: value(this.fields.level),
      stain: value(this.fields.stain),
    };
    this.submit.disabled = true;
    this.message.classList.remove("error");
    this.message.textContent = t.placement.saving;
    try {
      const placed = await placeSlide(this.slide.id, placement);
      Object.assign(this.slide, {
        case_id: placed.case_id ?? null,
        case_reference: placed.case_reference ?? null,
        part: placed.part ?? null,
        block: placed.block ?? null,
        level: placed.level ?? null,
        stain: placed.stain ?? null,
        link_source: placed.link_source ?? null,
      });
      this.message.textContent = t.placement.saved;
      this.onSaved();
      this.element.close();
    } catch (error) {
      this.message.textContent = t.placement.failed(errorText(error));
      this.message.classList.add("error");
    } finally {
      this.submit.disabled = false;
    }
  }
}
