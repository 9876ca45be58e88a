/** The rotation slider (0° to 359°) and its readout: the slide page's toolbar and the compare
 * page's header each have one. */

import { h } from "../lib/dom";
import { normalizeDegrees } from "../lib/routes";
import { t } from "../lib/strings";

export interface RotationSlider {
  readonly slider: HTMLInputElement;
  readonly readout: HTMLOutputElement;
  /** Shows `degrees` (any angle: a viewport's, unnormalised). */
  show(degrees: number): void;
}

/** `turn` gets the slider's angle as the user moves it. */
export function rotationSlider(
  className: string,
  title: string,
  turn: (degrees: number) => void,
): RotationSlider {
  const slider = h("input", {
    type: "range",
    class: className,
    min: 0,
    max: 359,
    step: 1,
    value: 0,
    "aria-label": t.viewer.rotation,
    title,
  });
  const readout = h("output", { class: "rotation-value" }, "0°");
  slider.addEventListener("input", () => turn(Number(slider.value)));
  return {
    slider,
    readout,
    show(degrees) {
      const shown = Math.round(normalizeDegrees(degrees)) % 360;
      slider.value = String(shown);
      readout.textContent = `${shown}°`;
    },
  };
}
