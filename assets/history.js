// History: the points behind the charts, oldest first, in the shape of /api/v1/history
// points. Filled from the server's history on connect and from every live document.

import { currentTemp, get, isNum } from './format.js';

/** Chart span, also the history asked for on connect. */
export const WINDOW_MS = 10 * 60 * 1000;

/** The points (read-only outside this module; replaced by mergeHistory). */
export let points = [];
/** The server's collection interval, from its history reply. */
export let intervalMs = 1000;

const nz = (v) => (isNum(v) ? v : null);

const SERIES = ['cpu', 'mem', 'swap', 'temp', 'net_recv', 'net_sent', 'disk_read', 'disk_write'];

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
  if (last && p.t <= last.t) return; // already covered by the history reply
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
