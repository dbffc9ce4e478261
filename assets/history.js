// History: the points behind the charts, oldest first, in the shape of /api/v1/history
// points. The 10-minute view is filled from the server's history on connect and from every
// live document; the longer ranges (1h … 1y) come from /api/v1/history?range=, one point per
// bucket with its min and max (drawn as a band), fetched when chosen and refreshed once per
// bucket or minute.

import { currentTemp, get, isNum } from './format.js';

/** Chart span, also the history asked for on connect. */
export const WINDOW_MS = 10 * 60 * 1000;

/** The points (read-only outside this module; replaced by mergeHistory). */
export let points = [];
/** The server's collection interval, from its history reply. */
export let intervalMs = 1000;

const nz = (v) => (isNum(v) ? v : null);

const SERIES = ['cpu', 'mem', 'swap', 'temp', 'net_recv', 'net_sent', 'disk_read', 'disk_write', 'wifi_signal'];

function normalizePoint(p) {
  const out = { t: p.t, per_core: Array.isArray(p.per_core) ? p.per_core.map(nz) : [] };
  for (const k of SERIES) out[k] = nz(p[k]);
  return out;
}

export function pointFromDoc(d) {
  return normalizePoint({
    t: Date.parse(d.timestamp),
    cpu: get(d, ['cpu', 'usage_percent']),
    mem: get(d, ['memory', 'used_percent']),
    swap: get(d, ['swap', 'used_percent']),
    temp: currentTemp(d),
    net_recv: get(d, ['network', 'rates', 'recv_bytes_per_sec']),
    net_sent: get(d, ['network', 'rates', 'sent_bytes_per_sec']),
    disk_read: get(d, ['disk', 'io_rates', 'read_bytes_per_sec']),
    disk_write: get(d, ['disk', 'io_rates', 'write_bytes_per_sec']),
    wifi_signal: get(d, ['connectivity', 'wifi', 'signal_dbm']),
    per_core: get(d, ['cpu', 'per_core_usage']),
  });
}

function trim() {
  if (!points.length) return;
  const oldest = points[points.length - 1].t - WINDOW_MS - 2 * intervalMs;
  let i = 0;
  while (i < points.length && points[i].t < oldest) i++;
  if (i) points.splice(0, i);
}

export function addPoint(p) {
  if (!isNum(p.t)) return;
  const last = points[points.length - 1];
  if (last && p.t <= last.t) {
    // Up to two intervals back: already covered by the history reply. Further back: the
    // Pi's clock stepped backwards (fake-hwclock, NTP); shift what is shown so the charts
    // keep moving instead of freezing for the size of the step.
    if (last.t - p.t <= 2 * intervalMs) return;
    const shift = p.t - intervalMs - last.t;
    for (const q of points) q.t += shift;
  }
  points.push(p);
  trim();
}

// Server history replaces what we have for its span; older local points survive a server
// restart (the new server's history starts empty) and show up left of a gap.
export function mergeHistory(h) {
  if (h && isNum(h.interval_ms) && h.interval_ms > 0) intervalMs = h.interval_ms;
  const hist = (h && Array.isArray(h.points) ? h.points : []).filter((p) => p && isNum(p.t)).map(normalizePoint);
  if (!hist.length) return;
  const first = hist[0].t;
  const last = hist[hist.length - 1].t;
  points = points.filter((p) => p.t < first).concat(hist, points.filter((p) => p.t > last));
  trim();
}

// ---------------------------------------------------------------- ranges

/** The ranges the server keeps, and their spans. */
export const RANGES = {
  '10m': 10 * 60e3, '1h': 3600e3, '24h': 86400e3, '7d': 7 * 86400e3, '30d': 30 * 86400e3, '1y': 365 * 86400e3,
};
const RANGE_TEXT = {
  '10m': 'the last 10 minutes', '1h': 'the last hour', '24h': 'the last 24 hours',
  '7d': 'the last 7 days', '30d': 'the last 30 days', '1y': 'the last year',
};

/** The chosen range (`10m`: the live view). */
export let range = '10m';
/** The reply for `range` when it is not the live view: { points, resolutionMs, at }. */
let view = null;
/**
 * The last reply of every range chosen on this page, so that switching back draws at once: a
 * year of history is 650 KB of JSON, which a phone takes longer to fetch and parse than to draw.
 */
const kept = {};
/** How long a kept reply is shown without asking again: one bucket, at least a minute. */
const freshMs = (v) => Math.max(60000, v.resolutionMs);

export const rangeText = () => RANGE_TEXT[range];
export const windowMs = () => RANGES[range];

/** What the charts draw: the live points, or the chosen range's. */
export function chartPoints() {
  return range === '10m' ? points : view ? view.points : [];
}

/** The time between two points of what the charts draw. */
export function chartStepMs() {
  return range === '10m' || !view ? intervalMs : view.resolutionMs;
}

// An aggregated point: the mean where a live point has its value, min and max in `band`.
// Called for every point of a reply, so it walks the series list rather than building entries.
function fromBucket(p) {
  const out = { t: p.t, band: {}, per_core: [] };
  for (const key of SERIES) {
    const v = p[key];
    if (Array.isArray(v) && v.length === 3 && isNum(v[0]) && isNum(v[1]) && isNum(v[2])) {
      out[key] = v[1];
      out.band[key] = [v[0], v[2]];
    } else {
      out[key] = null;
    }
  }
  const cores = p.per_core;
  if (Array.isArray(cores)) {
    for (const c of cores) out.per_core.push(Array.isArray(c) && c.length === 3 && isNum(c[1]) ? c[1] : null);
  }
  return out;
}

/** Most points asked for a range: the server's bound is 1,500; no chart is wider than this. */
export const MAX_RANGE_POINTS = 1000;
/** Fewest asked for, so a chart not laid out yet (width 0) still gets a readable line. */
const MIN_RANGE_POINTS = 120;
/** Points asked for a chart `cssWidth` CSS pixels wide: one per pixel, bounded. */
export const pointsFor = (cssWidth) =>
  Math.min(MAX_RANGE_POINTS, Math.max(MIN_RANGE_POINTS, Math.round(cssWidth) || 0));

/**
 * Chooses a range; resolves once its points are loaded (at once for the live view, and for a
 * range whose reply is still fresh). A kept reply is the view as soon as this is called, so
 * the caller can draw it at once while a stale one is fetched again.
 * `getJson(path)` fetches from the server (null on failure); `points`: how many points to ask
 * for, about the charts' width in CSS pixels (see pointsFor). The server merges neighbours to
 * fit, keeping each stretch's min and max: a year's reply is then a quarter of the 1,500
 * points it would be, and so are its download, JSON.parse and conversion.
 */
export async function setRange(r, getJson, points = MAX_RANGE_POINTS) {
  if (!(r in RANGES)) return;
  range = r;
  view = kept[r] || null;
  if (r !== '10m' && (!view || Date.now() - view.at >= freshMs(view))) await refreshRange(getJson, points);
}

/** Fetches the chosen range again (no-op for the live view). */
export async function refreshRange(getJson, points = MAX_RANGE_POINTS) {
  if (range === '10m') return;
  const asked = range;
  const h = await getJson(`api/v1/history?range=${asked}&points=${pointsFor(points)}`);
  if (asked !== range || !h || !Array.isArray(h.points)) return;
  view = {
    points: h.points.filter((p) => p && isNum(p.t)).map(fromBucket),
    resolutionMs: isNum(h.resolution_ms) && h.resolution_ms > 0 ? h.resolution_ms : 60000,
    at: Date.now(),
  };
  kept[asked] = view;
}
