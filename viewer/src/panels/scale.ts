/** An OpenSeadragon control showing the magnification on screen and a scale bar in µm/mm. */

import OpenSeadragon from "openseadragon";
import { h } from "../lib/dom";
import { formatMagnification, magnification, scaleBar } from "../lib/format";
import { t } from "../lib/strings";
import { imageZoom } from "../lib/transform";

/** The longest the bar may be, in CSS pixels. */
const MAX_BAR_PX = 160;

export class ScaleControl {
  readonly element: HTMLElement;
  private readonly magnification: HTMLElement;
  private readonly bar: HTMLElement;
  private readonly label: HTMLElement;
  private shown = "";

  /** `mpp`: µm per full-resolution pixel, or null when the slide has no calibration. */
  constructor(
    private readonly viewer: OpenSeadragon.Viewer,
    private readonly mpp: number | null,
  ) {
    this.magnification = h("span", { class: "magnification", title: t.viewer.magnificationHint });
    this.bar = h("span", { class: "bar" });
    this.label = h("span", { class: "bar-label" });
    const box =
      mpp === null
        ? h("div", { class: "scale-control" }, h("span", { class: "no-scale" }, t.viewer.noScale))
        : h(
            "div",
            { class: "scale-control" },
            this.magnification,
            h("span", { class: "scale", title: t.viewer.scaleHint }, this.bar, this.label),
          );
    // OpenSeadragon sizes the element it docks to 100% of its wrapper: style a child instead.
    this.element = h("div", {}, box);
    viewer.addControl(this.element, { anchor: OpenSeadragon.ControlAnchor.BOTTOM_LEFT, autoFade: false });
    viewer.addHandler("update-viewport", () => this.update());
  }

  /** µm covered by one CSS pixel of the screen now, or null before the image is open. */
  umPerScreenPixel(): number | null {
    const screenPerImagePixel = imageZoom(this.viewer);
    if (this.mpp === null || screenPerImagePixel === null) return null;
    return this.mpp / screenPerImagePixel;
  }

  update(): void {
    const um = this.umPerScreenPixel();
    if (um === null || !Number.isFinite(um) || um <= 0) return;
    const bar = scaleBar(um, MAX_BAR_PX);
    const mag = formatMagnification(magnification(um));
    const key = `${mag} ${bar.label} ${bar.widthPx.toFixed(0)}`;
    if (key === this.shown) return; // update-viewport fires every frame: touch the DOM only on change
    this.shown = key;
    this.magnification.textContent = mag;
    this.bar.style.width = `${bar.widthPx.toFixed(1)}px`;
    this.label.textContent = bar.label;
  }
}
