/**
 * What a model's results may be used for, as the manifest declares it: "research use only"
 * or "diagnostic aid". Shown wherever a model or its result is (the AI panel, the layers
 * panel), the same way: a badge, and beside a result a notice that says what it means.
 */

import type { IntendedUse } from "../lib/api";
import { h } from "../lib/dom";
import { t } from "../lib/strings";

/** The CSS class of a use: research (amber), diagnostic aid (green), anything else (grey). */
function useClass(use: IntendedUse): string {
  if (use === "research use only") return "research";
  if (use === "diagnostic aid") return "diagnostic";
  return "other";
}

export function intendedUseBadge(use: IntendedUse): HTMLElement {
  return h(
    "span",
    {
      class: `intended-use ${useClass(use)}`,
      "data-intended-use": use,
      title: t.ai.useHints[use] ?? t.ai.otherUse(use),
    },
    t.ai.uses[use] ?? t.ai.otherUse(use),
  );
}

/** The sentence beside a result: what its model's intended use allows. */
export function intendedUseNotice(use: IntendedUse): HTMLElement {
  return h(
    "p",
    { class: `intended-use-notice ${useClass(use)}`, role: "note", "data-intended-use": use },
    t.ai.notices[use] ?? t.ai.otherUse(use),
  );
}
