/** The login page: username and password, and the OpenID Connect button when the hub has one. */

import { getLoginOptions, login } from "../lib/api";
import { h, mount, setTitle } from "../lib/dom";
import { ApiError, errorText, LoginThrottled } from "../lib/errors";
import { t } from "../lib/strings";
import { appHeader } from "../panels/header";

/** `next`: the page to go back to once signed in (a path of this hub, see lib/routes.ts). */
export async function showLogin(root: HTMLElement, next: string): Promise<void> {
  setTitle(t.login.title);
  const username = h("input", {
    type: "text",
    name: "username",
    id: "login-username",
    autocomplete: "username",
    autocapitalize: "none",
    spellcheck: "false",
    required: true,
  });
  const password = h("input", {
    type: "password",
    name: "password",
    id: "login-password",
    autocomplete: "current-password",
    required: true,
  });
  const submit = h("button", { type: "submit", class: "login-submit" }, t.login.submit);
  const message = h("p", { class: "login-message error", role: "alert", hidden: true });
  const form = h(
    "form",
    { class: "login-form", method: "post", action: "/api/login" },
    h("label", { for: "login-username" }, t.login.username),
    username,
    h("label", { for: "login-password" }, t.login.password),
    password,
    message,
    submit,
  );
  const oidc = h("div", { class: "login-oidc", hidden: true });
  mount(
    root,
    h(
      "div",
      { class: "page login-page" },
      appHeader(),
      h(
        "main",
        { class: "login" },
        h(
          "section",
          { class: "login-card" },
          h("h1", {}, t.login.title),
          h("p", { class: "login-intro" }, t.login.intro),
          form,
          oidc,
        ),
      ),
    ),
  );
  username.focus();

  // A failed sign-in at the identity provider comes back as /login?error=oidc_…: a code,
  // explained here; never text from the URL itself.
  const failure = new URLSearchParams(window.location.search).get("error");
  if (failure !== null && failure.startsWith("oidc_")) {
    // (Every key of oidcErrors starts with "oidc_", so no inherited property can match.)
    message.textContent = t.login.oidcErrors[failure] ?? t.login.oidcFailed;
    message.hidden = false;
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void signIn();
  });

  async function signIn(): Promise<void> {
    submit.disabled = true;
    submit.textContent = t.login.busy;
    message.hidden = true;
    try {
      await login(username.value, password.value);
      window.location.assign(next);
      return;
    } catch (error) {
      message.textContent =
        error instanceof LoginThrottled
          ? t.login.throttled(error.retryAfter)
          : error instanceof ApiError && error.status === 401
            ? t.login.failed
            : errorText(error);
      message.hidden = false;
      password.value = "";
      password.focus();
    }
    submit.disabled = false;
    submit.textContent = t.login.submit;
  }

  try {
    const options = await getLoginOptions();
    if (options.oidc) {
      const href = `/api/login/oidc?${new URLSearchParams({ next })}`;
      oidc.replaceChildren(
        h("p", { class: "login-or" }, t.login.or),
        h("a", { class: "login-oidc-button", href }, t.login.oidc(options.oidc_label ?? "OpenID Connect")),
      );
      oidc.hidden = false;
    }
  } catch {
    // Without the options, the password form still works.
  }
}
