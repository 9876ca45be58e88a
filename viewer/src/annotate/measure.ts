/** Lengths and areas as a pathologist reads them, in the page's language. */

import { t } from "../strings";

const threeDigits = new Intl.NumberFormat(t.locale, { maximumSignificantDigits: 3 });
const oneDecimal = new Intl.NumberFormat(t.locale, { maximumFractionDigits: 1, minimumFractionDigits: 1 });

/** µm up to a millimetre ("412.5 µm"), then mm ("1.23 mm"). */
export function formatLength(um: number): string {
  return um < 1000
    ? `${oneDecimal.format(um)} ${t.units.micrometre}`
    : `${threeDigits.format(um / 1000)} ${t.units.millimetre}`;
}

/** Always mm², the unit of tumour areas in reports ("0.0123 mm²"). */
export function formatArea(mm2: number): string {
  return `${threeDigits.format(mm2)} ${t.units.millimetre}²`;
}
