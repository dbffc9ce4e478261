// Formatting: turns the document's raw values into the text the page shows, in the units
// the user chose (prefs.js). A missing or non-finite value always becomes a dash, never
// "NaN" or "undefined".

import { prefs } from './prefs.js';

export const DASH = '\u2014';

export const isNum = (v) => typeof v === 'number' && Number.isFinite(v);

const GIB = 1024 * 1024 * 1024;
const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

export function bytes(b) {
  if (!isNum(b) || b < 0) return DASH;
  let v = b;
  let i = 0;
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  if (i === 0) return Math.round(v) + ' B';
  return v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2) + ' ' + UNITS[i];
}

const BIT_UNITS = ['bit/s', 'kbit/s', 'Mbit/s', 'Gbit/s', 'Tbit/s'];

/** A rate given in bytes per second, as bits per second (decimal prefixes, as links are sold). */
export function bits(bytesPerSec) {
  if (!isNum(bytesPerSec) || bytesPerSec < 0) return DASH;
  let v = bytesPerSec * 8;
  let i = 0;
  while (v >= 1000 && i < BIT_UNITS.length - 1) {
    v /= 1000;
    i++;
  }
  if (i === 0) return Math.round(v) + ' bit/s';
  return v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2) + ' ' + BIT_UNITS[i];
}

/** °C to the chosen temperature unit. */
export const tempIn = (c) => (prefs.temp === 'f' ? (c * 9) / 5 + 32 : c);
export const tempUnit = () => (prefs.temp === 'f' ? '°F' : '°C');

// Intl formatters are costly to create (tens of them per document on a slow phone): made
// once per clock setting and reused.
const INT = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const clocks = {};
function clock(kind) {
  const hc = prefs.clock === '12' ? 'h12' : 'h23';
  const key = kind + hc;
  if (!clocks[key]) {
    clocks[key] = new Intl.DateTimeFormat(undefined, kind === 'time'
      ? { hour: 'numeric', minute: '2-digit', second: '2-digit', hourCycle: hc }
      : { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', hourCycle: hc });
  }
  return clocks[key];
}

/** A time of day on the chosen clock. */
export function clockTime(ms) {
  if (!isNum(ms)) return DASH;
  return clock('time').format(ms);
}

export function duration(s) {
  if (!isNum(s) || s < 0) return DASH;
  s = Math.floor(s);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return `${d} d ${h} h ${m} min`;
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min ${s % 60} s`;
  return `${s % 60} s`;
}

export function dateTime(v) {
  const t = typeof v === 'string' ? Date.parse(v) : NaN;
  if (!isNum(t)) return DASH;
  return clock('date').format(t);
}

/** Formatters by the name used in `data-fmt`. */
export const FMT = {
  text: (v) => (v == null || v === '' || (typeof v === 'number' && !isNum(v)) ? DASH : String(v)),
  int: (v) => (isNum(v) ? INT.format(Math.round(v)) : DASH),
  pct: (v) => (isNum(v) ? v.toFixed(1) + '%' : DASH),
  gib: (v) => (isNum(v) ? bytes(v * GIB) : DASH),
  bytes,
  rate: (v) => (isNum(v) && v >= 0 ? bytes(v) + '/s' : DASH),
  // network rates follow the chosen unit; disk rates are always bytes
  netrate: (v) => (!isNum(v) || v < 0 ? DASH : prefs.rate === 'bits' ? bits(v) : bytes(v) + '/s'),
  freq: (v) => (isNum(v) && v > 0 ? (v >= 1000 ? (v / 1000).toFixed(2) + ' GHz' : Math.round(v) + ' MHz') : DASH),
  temp: (v) => (isNum(v) ? tempIn(v).toFixed(1) + ' ' + tempUnit() : DASH),
  dbm: (v) => (isNum(v) ? Math.round(v) + ' dBm' : DASH),
  volts: (v) => (isNum(v) ? v.toFixed(3) + ' V' : DASH),
  load: (v) => (isNum(v) ? v.toFixed(2) : DASH),
  dur: duration,
  date: dateTime,
  yesno: (v) => (v === true ? 'Yes' : v === false ? 'No' : DASH),
  list: (v) => (Array.isArray(v) && v.length ? v.join(', ') : DASH),
};

export function temperatureLevel(c) {
  if (!isNum(c)) return { level: '', word: DASH };
  // The Pi firmware soft-limits at 80 °C and throttles hard at 85 °C.
  if (c >= 80) return { level: 'crit', word: 'Critical: throttling likely' };
  if (c >= 70) return { level: 'hot', word: 'Hot' };
  if (c >= 60) return { level: 'warm', word: 'Warm' };
  return { level: 'ok', word: 'Normal' };
}

/** Reads `path` (an array of keys) from a document; undefined where any step is missing. */
export function get(obj, path) {
  for (const k of path) {
    if (obj == null) return undefined;
    obj = obj[k];
  }
  return obj;
}

/** The CPU temperature in °C: the flat seed field, else the Pi firmware's reading. */
export function currentTemp(d) {
  const flat = d.temperature_celsius;
  return isNum(flat) ? flat : get(d, ['temperature', 'pi_cpu_celsius']);
}
