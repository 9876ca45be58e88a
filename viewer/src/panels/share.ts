/**
 * "Share…" on the slide page: gives another centre (or one user of another centre) the
 * de-identified view of a slide of the user's own centre, and lists and revokes the slide's
 * grants. The hub decides (exchange/access/policy.py: pathologists and centre admins of the
 * slide's centre); the button is only hidden for users it would refuse anyway, and any
 * refusal is shown with the hub's own reason.
 */

import {
  createGrant,
  getMe,
  listCentres,
  listGrants,
  PURPOSES,
  revokeGrant,
  type Centre,
  type Grant,
  type GrantRequest,
  type Purpose,
  type SlideDetail,
} from "../lib/api";
import { h } from "../lib/dom";
import { errorText } from "../lib/errors";
import { formatDate, formatPurpose } from "../lib/format";
import { t } from "../lib/strings";

const GRANT_ROLES = ["pathologist", "centre_admin"];

/** The header's "Share…" button and the dialog it opens; shown once /api/me says the user
 * may share this slide (or could not say: then the hub's answer will). */
export function shareButton(slide: SlideDetail, centreNames: Map<string, string>): HTMLElement {
  const button = h(
    "button",
    { type: "button", class: "share-button", title: t.share.buttonHint, hidden: true },
    t.share.button,
  );
  getMe().then(
    (me) => {
      button.hidden = !(
        me.user.centre === slide.centre && me.user.roles.some((r) => GRANT_ROLES.includes(r))
      );
    },
    () => {
      button.hidden = false;
    },
  );
  let dialog: ShareDialog | null = null;
  button.addEventListener("click", () => {
    dialog ??= new ShareDialog(slide, centreNames);
    dialog.open();
  });
  return button;
}

/** A grant's state as the dialog names it. */
export function grantState(grant: Grant): "live" | "expired" | "revoked" {
  if (grant.revoked_at) return "revoked";
  return grant.live ? "live" : "expired";
}

class ShareDialog {
  private readonly element: HTMLDialogElement;
  private readonly form: HTMLFormElement;
  private readonly toCentre: HTMLInputElement;
  private readonly toUser: HTMLInputElement;
  private readonly centre: HTMLSelectElement;
  private readonly username: HTMLInputElement;
  private readonly purpose: HTMLSelectElement;
  private readonly expires: HTMLInputElement;
  private readonly legalBasis: HTMLInputElement;
  private readonly submit: HTMLButtonElement;
  private readonly message: HTMLElement;
  private readonly list: HTMLElement;
  private readonly listStatus: HTMLElement;

  constructor(
    private readonly slide: SlideDetail,
    private readonly centreNames: Map<string, string>,
  ) {
    this.toCentre = h("input", { type: "radio", name: "share-to", value: "centre", checked: true });
    this.toUser = h("input", { type: "radio", name: "share-to", value: "user" });
    this.centre = h("select", { name: "centre", class: "share-centre" });
    this.username = h("input", {
      type: "text",
      name: "user",
      class: "share-user",
      placeholder: t.share.usernamePlaceholder,
      autocomplete: "off",
      spellcheck: "false",
    });
    this.purpose = h(
      "select",
      { name: "purpose", class: "share-purpose" },
      ...PURPOSES.map((p) => h("option", { value: p }, formatPurpose(p))),
    );
    this.expires = h("input", { type: "date", name: "expires", class: "share-expires" });
    this.legalBasis = h("input", {
      type: "text",
      name: "legal_basis",
      class: "share-legal-basis",
      maxlength: 500,
      placeholder: t.share.legalBasisPlaceholder,
    });
    this.submit = h("button", { type: "submit", class: "share-submit" }, t.share.submit);
    this.message = h("p", { class: "share-message", role: "status" });
    this.listStatus = h("p", { class: "share-none" });
    this.list = h("ul", { class: "share-grants" });
    const close = h("button", { type: "button", class: "share-close" }, t.share.close);

    this.form = h(
      "form",
      { class: "share-form", method: "dialog" },
      h(
        "fieldset",
        {},
        h("legend", {}, t.share.recipient),
        label(this.toCentre, t.share.toCentre),
        label(this.toUser, t.share.toUser),
      ),
      h("label", { class: "share-field share-centre-field" }, h("span", {}, t.share.centre), this.centre),
      h(
        "label",
        { class: "share-field share-user-field", hidden: true },
        h("span", {}, t.share.username),
        this.username,
      ),
      h("label", { class: "share-field" }, h("span", {}, t.share.purpose), this.purpose),
      h("label", { class: "share-field" }, h("span", {}, t.share.expires), this.expires),
      h("label", { class: "share-field" }, h("span", {}, t.share.legalBasis), this.legalBasis),
      h("div", { class: "share-actions" }, this.submit, close),
      this.message,
    );
    this.element = h(
      "dialog",
      { class: "share-dialog", "aria-labelledby": "share-title" },
      h("h2", { id: "share-title" }, t.share.title),
      h("p", { class: "share-intro" }, t.share.intro),
      this.form,
      h("h3", {}, t.share.current),
      this.listStatus,
      this.list,
    );
    document.body.append(this.element);

    const pickRecipient = (): void => {
      const [centreField, userField] = [this.centre.parentElement, this.username.parentElement];
      if (centreField) centreField.hidden = !this.toCentre.checked;
      if (userField) userField.hidden = this.toCentre.checked;
    };
    this.toCentre.addEventListener("change", pickRecipient);
    this.toUser.addEventListener("change", pickRecipient);
    close.addEventListener("click", () => this.element.close());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.share();
    });
    // The date picker cannot offer a past day: the hub refuses one.
    this.expires.min = new Date().toISOString().slice(0, 10);
  }

  open(): void {
    if (!this.element.open) this.element.showModal();
    this.message.textContent = "";
    void this.loadCentres();
    void this.refresh();
  }

  private async loadCentres(): Promise<void> {
    if (this.centre.options.length > 0) return;
    let centres: Centre[];
    try {
      centres = await listCentres();
    } catch (error) {
      this.showMessage(t.share.failed(errorText(error)), true);
      return;
    }
    for (const centre of centres) {
      if (centre.code === this.slide.centre) continue; // it sees its own slides already
      this.centre.append(h("option", { value: centre.code }, centre.name || centre.code));
    }
  }

  private showMessage(text: string, error: boolean): void {
    this.message.textContent = text;
    this.message.classList.toggle("error", error);
    this.message.setAttribute("role", error ? "alert" : "status");
  }

  private async share(): Promise<void> {
    const request: GrantRequest = {
      slide_id: this.slide.id,
      purpose: this.purpose.value as Purpose,
    };
    let who: string;
    if (this.toCentre.checked) {
      request.centre = this.centre.value;
      who = this.centreNames.get(this.centre.value) ?? this.centre.value;
    } else {
      request.user = this.username.value.trim();
      who = request.user;
    }
    if (this.expires.value) {
      // To the end of the chosen day, in the user's time zone.
      request.expires_at = new Date(`${this.expires.value}T23:59:59`).toISOString();
    }
    const basis = this.legalBasis.value.trim();
    if (basis) request.legal_basis = basis;
    this.submit.disabled = true;
    this.showMessage(t.share.sharing, false);
    try {
      await createGrant(request);
      this.showMessage(t.share.shared(who), false);
    } catch (error) {
      this.showMessage(t.share.failed(errorText(error)), true);
    } finally {
      this.submit.disabled = false;
    }
    await this.refresh();
  }

  /** The slide's grants, as the hub has them now. */
  private async refresh(): Promise<void> {
    let grants: Grant[];
    try {
      grants = (await listGrants()).filter((g) => g.direction === "given" && g.slide_id === this.slide.id);
    } catch (error) {
      this.listStatus.textContent = t.share.loadFailed(errorText(error));
      this.list.replaceChildren();
      return;
    }
    this.listStatus.textContent = grants.length === 0 ? t.share.none : "";
    this.listStatus.hidden = grants.length > 0;
    // Live ones first, newest first within each state.
    const order = { live: 0, expired: 1, revoked: 2 };
    grants.sort(
      (a, b) => order[grantState(a)] - order[grantState(b)] || b.created_at.localeCompare(a.created_at),
    );
    this.list.replaceChildren(...grants.map((grant) => this.grantItem(grant)));
  }

  private grantItem(grant: Grant): HTMLElement {
    const state = grantState(grant);
    const who =
      grant.grantee_user ?? this.centreNames.get(grant.grantee_centre ?? "") ?? grant.grantee_centre ?? "";
    const facts = [formatPurpose(grant.purpose)];
    if (grant.expires_at && state === "live") facts.push(t.share.until(formatDate(grant.expires_at)));
    if (grant.legal_basis) facts.push(grant.legal_basis);
    const revoke = h("button", { type: "button", class: "share-revoke" }, t.share.revoke);
    revoke.hidden = state === "revoked";
    revoke.addEventListener("click", () => {
      revoke.disabled = true;
      revokeGrant(grant.id).then(
        () => void this.refresh(),
        (error: unknown) => {
          revoke.disabled = false;
          this.showMessage(t.share.revokeFailed(errorText(error)), true);
        },
      );
    });
    return h(
      "li",
      { class: `share-grant state-${state}`, "data-grant-id": grant.id },
      h("span", { class: "share-who" }, who),
      h("span", { class: "share-facts" }, facts.join(" · ")),
      h("span", { class: `badge share-state state-${state}` }, t.share.states[state] ?? state),
      revoke,
    );
  }
}

function label(input: HTMLInputElement, text: string): HTMLElement {
  return h("label", { class: "share-choice" }, input, ` ${text}`);
}
