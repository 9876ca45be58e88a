/** The top bar shared by every page: brand (a link to the worklist) and page-specific parts. */

import { getMe, logout } from "../lib/api";
import { h } from "../lib/dom";
import { lastWorklistUrl, LOGIN_PATH, loginUrl, worklistUrl } from "../lib/routes";
import { setLanguage, t } from "../lib/strings";

export function appHeader(...parts: Node[]): HTMLElement {
  return h(
    "header",
    { class: "app-header" },
    h(
      "a",
      { class: "brand", href: worklistUrl(), title: t.app.tagline },
      h("img", { src: "/favicon.svg", alt: "", width: 22, height: 22 }),
      h("span", { class: "brand-name" }, t.app.name),
    ),
    ...parts,
    account(),
    languageToggle(),
  );
}

/** "← Worklist": the slide and compare pages' way back, to the list as the user left it
 * (its search and filters). */
export function backLink(): HTMLElement {
  return h("a", { class: "back", href: lastWorklistUrl() }, `← ${t.viewer.back}`);
}

/** Who is signed in, and the sign-out button; filled in once /api/me answers. */
function account(): HTMLElement {
  const element = h("div", { class: "account", hidden: true });
  if (window.location.pathname === LOGIN_PATH) return element;
  void getMe().then(
    (me) => {
      const name = me.user.display_name || me.user.username;
      const button = h("button", { type: "button", class: "logout" }, t.account.logout);
      button.addEventListener("click", () => {
        button.disabled = true;
        void logout().finally(() => window.location.assign(loginUrl("/")));
      });
      element.replaceChildren(
        h(
          "span",
          { class: "account-name", title: me.user.roles.join(", ") },
          t.account.signedInAs(name, me.user.centre),
        ),
        me.auth === "token" ? "" : button,
      );
      element.hidden = false;
    },
    () => {
      // Not signed in: the page's own requests send the user to the login page.
    },
  );
  return element;
}

/** One button naming the other language in itself ("Français", "English"). */
function languageToggle(): HTMLElement {
  const { other, otherName, switchHint } = t.language;
  const button = h(
    "button",
    { type: "button", class: "language", lang: other, title: switchHint },
    otherName,
  );
  button.addEventListener("click", () => setLanguage(other));
  return button;
}

/** A small mark for the slide page's header: this slide is seen through the de-identified
 * view (no name, label, annotations or layers), with why in its tooltip. */
export function deidentifiedNotice(): HTMLElement {
  return h(
    "span",
    { class: "deidentified-notice", role: "note", title: t.viewer.deidentifiedHint },
    t.viewer.deidentified,
  );
}
