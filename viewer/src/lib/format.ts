/** Pure formatting and unit arithmetic: no DOM, no OpenSeadragon. */

import { t } from "./strings";

export function formatVendor(vendor: string): string {
  return t.vendors[vendor] ?? vendor;
}

/** A grant's purpose as the language names it ("Second opinion"); unknown ones as they are. */
export function formatPurpose(purpose: string): string {
  return t.share.purposes[purpose] ?? purpose;
}

/** µm per pixel at which a slide is said to be seen at 10× (so 40× ≈ 0.25 µm/px). */
export const MPP_AT_10X = 1.0;

const numbers = new Intl.NumberFormat(t.locale);
/** A decimal as the language writes it ("2.5", "2,5"), every digit kept, no grouping. */
const decimals = new Intl.NumberFormat(t.locale, { maximumFractionDigits: 20, useGrouping: false });

export function formatDecimal(n: number): string {
  return decimals.format(n);
}

export function formatInteger(n: number): string {
  return numbers.format(Math.round(n));
}

export function formatDimensions(width: number, height: number): string {
  return `${formatInteger(width)} × ${formatInteger(height)} ${t.units.pixels}`;
}

export function formatBytes(bytes: number): string {
  const units = t.units.bytes;
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  const digits = unit === 0 || value >= 100 ? 0 : 1;
  const text = value.toLocaleString(t.locale, {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
  return `${text} ${units[unit]}`;
}

export function formatDate(iso: string): string {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return date.toLocaleDateString(t.locale, { year: "numeric", month: "short", day: "numeric" });
}

/** The optical magnification equivalent to `umPerScreenPixel` µm per screen pixel. */
export function magnification(umPerScreenPixel: number): number {
  return (10 * MPP_AT_10X) / umPerScreenPixel;
}

/** The microscope objectives pathologists name views by (keys 1 to 6 in the viewer). */
export const OBJECTIVES = [1.25, 2.5, 5, 10, 20, 40] as const;

/** Screen pixels per full-resolution pixel that show a slide of `mpp` µm/px at `mag`. */
export function imageZoomAt(mag: number, mpp: number): number {
  return mpp / ((10 * MPP_AT_10X) / mag);
}

/**
 * "40×", "2.5×", "0.31×": whole numbers from 10× up, two significant digits below, and an
 * objective's own name within 1% of it ("1.25×", not "1.3×").
 */
export function formatMagnification(mag: number): string {
  const objective = OBJECTIVES.find((o) => Math.abs(mag / o - 1) < 0.01);
  const value = objective ?? (mag >= 10 ? Math.round(mag) : Number(mag.toPrecision(2)));
  return `${formatDecimal(value)}${t.units.times}`;
}

export function formatMpp(mpp: number): string {
  return `${formatDecimal(Number(mpp.toPrecision(3)))} ${t.units.perPixel}`;
}

/** A round length in µm (a scale bar's) as "500 µm", "0.5 µm" or "2 mm". */
export function formatLength(um: number): string {
  if (um >= 1000) return `${formatDecimal(Number((um / 1000).toPrecision(3)))} ${t.units.millimetre}`;
  return `${formatDecimal(Number(um.toPrecision(3)))} ${t.units.micrometre}`;
}

/**
 * How a slide was scanned, e.g. "40× · 0.228 µm/px": the objective the scanner recorded when
 * it did (what pathologists call the slide's magnification), else the one its pixel size
 * implies; null when neither is known.
 */
export function scanResolution(slide: { mpp: number | null; objective_power: number | null }): string | null {
  const objective =
    slide.objective_power !== null && slide.objective_power > 0
      ? slide.objective_power
      : slide.mpp !== null
        ? magnification(slide.mpp)
        : null;
  if (objective === null) return null;
  const parts = [formatMagnification(objective)];
  if (slide.mpp !== null) parts.push(formatMpp(slide.mpp));
  return parts.join(" · ");
}

export interface ScaleBar {
  /** Length the bar stands for, in µm: 1, 2 or 5 times a power of ten. */
  readonly lengthUm: number;
  /** Its width on screen, in CSS pixels (at most the `maxWidthPx` asked for). */
  readonly widthPx: number;
  readonly label: string;
}

/** The longest round length that fits in `maxWidthPx` screen pixels. */
export function scaleBar(umPerScreenPixel: number, maxWidthPx: number): ScaleBar {
  const maxUm = umPerScreenPixel * maxWidthPx;
  const power = 10 ** Math.floor(Math.log10(maxUm));
  const step = [5, 2, 1].find((s) => s * power <= maxUm) ?? 1;
  // Rounding: 10 ** -1 * 5 is 0.5000000000000001.
  const lengthUm = Number((step * power).toPrecision(1));
  return { lengthUm, widthPx: lengthUm / umPerScreenPixel, label: formatLength(lengthUm) };
}

// ---- measurements, as a pathologist reads them ---------------------------------------------

const threeDigits = new Intl.NumberFormat(t.locale, { maximumSignificantDigits: 3 });
const oneDecimal = new Intl.NumberFormat(t.locale, { maximumFractionDigits: 1, minimumFractionDigits: 1 });

/** A measured length (an annotation's): µm up to a millimetre ("412.5 µm"), then mm ("1.23 mm"). */
export function formatMeasuredLength(um: number): string {
  return um < 1000
    ? `${oneDecimal.format(um)} ${t.units.micrometre}`
    : `${threeDigits.format(um / 1000)} ${t.units.millimetre}`;
}

/** Always mm², the unit of tumour areas in reports ("0.0123 mm²"). */
export function formatArea(mm2: number): string {
  return `${threeDigits.format(mm2)} ${t.units.millimetre}²`;
}

/** Folds case and accents, so "francois" finds "François". */
export function searchKey(text: string): string {
  return text
    .normalize("NFD")
    .replace(/\p{Diacritic}/gu, "")
    .toLowerCase();
}

/** A calendar day sent as "YYYY-MM-DD" (a case's received date), in the language's words:
 * the day itself, whatever the browser's time zone. */
export function formatDay(day: string): string {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(day);
  if (!match) return day;
  const date = new Date(Number(match[1]), Number(match[2]) - 1, Number(match[3]));
  return date.toLocaleDateString(t.locale, { year: "numeric", month: "short", day: "numeric" });
}

/** Where a slide was cut from, as labs write it: part and block run together ("A" + "3" is
 * "A3", a block "A3" stays "A3"), a level after a dot ("A3.2"); null when none is known. */
export function formatBlock(slide: {
  part?: string | null;
  block?: string | null;
  level?: string | null;
}): string | null {
  const part = slide.part ?? "";
  const block = slide.block ?? "";
  let text = block && part && !block.startsWith(part) ? `${part}${block}` : block || part;
  if (slide.level) text = text ? `${text}.${slide.level}` : slide.level;
  return text || null;
}

/** A moment as the language writes it, to the minute ("7 Dec 2026, 16:15"). */
export function formatDateTime(iso: string): string {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return date.toLocaleString(t.locale, {
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
  });
}

/** A time left or taken, rounded as a person says it: "0.82 s", "12 s", "3 min", "1 h 05". */
export function formatSeconds(seconds: number): string {
  if (seconds < 10) return `${formatDecimal(Number(Math.max(0, seconds).toPrecision(2)))} s`;
  if (seconds < 90) return `${Math.round(seconds)} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")}`;
}

/** A percentage without a needless decimal ("42", "99.5"). */
export function formatPercent(percent: number): string {
  return new Intl.NumberFormat(t.locale, { maximumFractionDigits: 1 }).format(percent);
}
