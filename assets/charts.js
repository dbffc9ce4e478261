// Charts: the chosen range of history drawn on canvases, in the colours of the page's theme
// (CSS custom properties --c-*, read again whenever the theme changes). Aggregated ranges draw
// each series' mean as the line and its min–max as a band; warning and critical events are
// marked as vertical lines.

import { FMT, bits, isNum, tempIn, tempUnit } from './format.js';
import { prefs } from './prefs.js';
import { $, setAttr } from './dom.js';
import { chartPoints, chartStepMs, rangeText, windowMs } from './history.js';
import { markers } from './events.js';

let palette = {};
let chartFont = '11px sans-serif';

/** Reads the theme's chart colours (and the page's font) from the CSS. */
export function readPalette() {
  const cs = getComputedStyle(document.documentElement);
  chartFont = '11px ' + getComputedStyle(document.body).fontFamily;
  palette = {};
  for (const name of ['cpu', 'core', 'mem', 'swap', 'temp', 'rx', 'tx', 'read', 'write', 'grid', 'axis']) {
    palette[name] = cs.getPropertyValue('--c-' + name).trim() || '#888';
  }
  palette.warn = cs.getPropertyValue('--warn').trim() || '#b45309';
  palette.crit = cs.getPropertyValue('--crit').trim() || '#b91c1c';
}

// "−2 min", "−6 h", "−3 d": how long ago a point of the axis is, in the range's unit.
function agoLabel(ms, span) {
  if (span <= 2 * 3600e3) return `−${Math.round(ms / 60e3)} min`;
  if (span <= 2 * 86400e3) return `−${Math.round(ms / 3600e3)} h`;
  return `−${Math.round(ms / 86400e3)} d`;
}

function niceStep(x) {
  const p = Math.pow(10, Math.floor(Math.log10(x)));
  const f = x / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

// Axis for a rate: steps are round numbers in the unit the maximum is shown in (powers of
// `base`). Values are in display units (bytes/s, or bits/s).
function rateAxis(max, base, fmt) {
  let unit = 1;
  while (max / unit >= base && unit < Math.pow(base, 4)) unit *= base;
  const step = niceStep(Math.max(max / unit, 1) / 4) * unit;
  const hi = Math.max(step, Math.ceil(max / step) * step);
  const ticks = [];
  for (let v = 0; v <= hi + step / 2; v += step) ticks.push(v);
  return { lo: 0, hi, ticks, label: (v) => (v === 0 ? '0' : fmt(v).replace(/\.0+ /, ' ')) };
}

// Axis for temperatures in the display unit: steps of 10 or 20 degrees around the data.
function tempAxis(min, max) {
  if (!isNum(min)) {
    min = tempIn(30);
    max = tempIn(60);
  }
  const lo = Math.floor((min - 2) / 10) * 10;
  let hi = Math.ceil((max + 2) / 10) * 10;
  if (hi - lo < 20) hi = lo + 20;
  const step = hi - lo > 60 ? 20 : 10;
  hi = lo + Math.ceil((hi - lo) / step) * step;
  const ticks = [];
  for (let v = lo; v <= hi; v += step) ticks.push(v);
  const unit = tempUnit();
  return { lo, hi, ticks, label: (v) => v + ' ' + unit };
}

const PCT_AXIS = { lo: 0, hi: 100, ticks: [0, 25, 50, 75, 100], label: (v) => v + '%' };
// Wi-Fi signal: −90 dBm is about unusable, −30 dBm next to the access point.
const DBM_AXIS = { lo: -90, hi: -30, ticks: [-90, -75, -60, -45, -30], label: (v) => v + ' dBm' };

const same = (v) => v;

// How a kind of chart shows its values: conversion to display units, axis, text.
function display(kind) {
  switch (kind) {
    case 'pct':
      return { conv: same, axis: () => PCT_AXIS, fmt: FMT.pct };
    case 'temp':
      return { conv: tempIn, axis: tempAxis, fmt: FMT.temp };
    case 'dbm':
      return { conv: same, axis: () => DBM_AXIS, fmt: FMT.dbm };
    case 'netrate':
      if (prefs.rate === 'bits') return { conv: (v) => v * 8, axis: (lo, hi) => rateAxis(hi, 1000, (v) => bits(v / 8)), fmt: FMT.netrate };
      return { conv: same, axis: (lo, hi) => rateAxis(hi, 1024, FMT.rate), fmt: FMT.netrate };
    default:
      return { conv: same, axis: (lo, hi) => rateAxis(hi, 1024, FMT.rate), fmt: FMT.rate };
  }
}

class Chart {
  constructor(canvas, opts) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
    this.opts = opts;
    // the chart's name; the current values and their range are added to it on every draw
    this.name = canvas.getAttribute('aria-label');
  }

  // The axis for the visible points, in display units (the conversions are increasing).
  axis(pts, t0, disp) {
    if (this.opts.kind === 'pct') return PCT_AXIS;
    if (this.opts.kind === 'dbm') return DBM_AXIS;
    let min = Infinity;
    let max = -Infinity;
    for (const p of pts) {
      if (p.t < t0) continue;
      for (const s of this.opts.series) {
        const v = p[s.key];
        if (v == null) continue;
        if (v < min) min = v;
        if (v > max) max = v;
      }
    }
    if (this.opts.kind === 'temp') return max === -Infinity ? tempAxis() : tempAxis(disp.conv(min), disp.conv(max));
    return disp.axis(0, disp.conv(max > 0 ? max : 1024));
  }

  // The text alternative: what the chart shows, each series' latest value and its range.
  describe(visible, disp) {
    const parts = [];
    for (const s of this.opts.series) {
      let now = null;
      let lo = Infinity;
      let hi = -Infinity;
      for (const p of visible) {
        const v = p[s.key];
        if (v == null) continue;
        now = v;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      if (now != null) parts.push(`${s.name} now ${disp.fmt(now)}, range ${disp.fmt(lo)} to ${disp.fmt(hi)}`);
    }
    const name = this.name.replace('the last 10 minutes', rangeText());
    return `${name}. ${parts.length ? parts.join('; ') + '.' : 'No readings yet.'}`;
  }

  // Keeps the chart's text alternative (and, for tests, how many points it holds and since
  // when) current; paints only when `paint`: off-screen charts cost no drawing.
  draw(pts, paint) {
    const c = this.canvas;
    const tEnd = pts.length ? pts[pts.length - 1].t : Date.now();
    const span = windowMs();
    const intervalMs = chartStepMs();
    const t0 = tEnd - span;
    const disp = display(this.opts.kind);
    const visible = pts.filter((p) => p.t >= t0);
    setAttr(c, 'data-points', String(visible.length));
    setAttr(c, 'data-since', visible.length ? String(visible[0].t) : null);
    setAttr(c, 'aria-label', this.describe(visible, disp));
    if (!paint) return;

    const w = c.clientWidth;
    const hgt = c.clientHeight;
    if (!w || !hgt) return;
    const dpr = window.devicePixelRatio || 1;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(hgt * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(hgt * dpr);
    }
    const ctx = this.ctx;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, hgt);
    ctx.font = chartFont;

    const ax = this.axis(pts, t0, disp);
    const labels = ax.ticks.map(ax.label);
    const L = Math.ceil(Math.max(...labels.map((s) => ctx.measureText(s).width))) + 10;
    const R = 4;
    const T = 8;
    const B = 20;
    const pw = w - L - R;
    const ph = hgt - T - B;
    if (pw <= 10 || ph <= 10) return;
    const X = (t) => L + ((t - t0) / span) * pw;
    const Y = (raw) => {
      const v = disp.conv(raw);
      return T + ph - ((Math.max(ax.lo, Math.min(ax.hi, v)) - ax.lo) / (ax.hi - ax.lo)) * ph;
    };

    // grid and axes labels
    ctx.lineWidth = 1;
    ctx.strokeStyle = palette.grid;
    ctx.fillStyle = palette.axis;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    ax.ticks.forEach((v, i) => {
      const y = Math.round(T + ph - ((v - ax.lo) / (ax.hi - ax.lo)) * ph) + 0.5;
      ctx.beginPath();
      ctx.moveTo(L, y);
      ctx.lineTo(L + pw, y);
      ctx.stroke();
      ctx.fillText(labels[i], L - 6, y);
    });
    ctx.textBaseline = 'alphabetic';
    const parts = pw < 380 ? 2 : 5;
    for (let i = parts; i >= 0; i--) {
      const ago = (span * i) / parts;
      ctx.textAlign = i === parts ? 'left' : i === 0 ? 'right' : 'center';
      ctx.fillText(i === 0 ? 'now' : agoLabel(ago, span), X(tEnd - ago), hgt - 4);
    }

    // events worth a look, as thin vertical lines
    ctx.save();
    ctx.globalAlpha = 0.5;
    for (const e of markers()) {
      if (e.t < t0 || e.t > tEnd) continue;
      ctx.strokeStyle = e.severity === 'critical' ? palette.crit : palette.warn;
      const x = Math.round(X(e.t)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(x, T);
      ctx.lineTo(x, T + ph);
      ctx.stroke();
    }
    ctx.restore();

    // data; a gap in time (server down, tab asleep) breaks the line
    const gap = Math.max(intervalMs * 3.5, 3000);
    // min–max of aggregated points: a light band under the mean's line
    const band = (key, color) => {
      ctx.save();
      ctx.beginPath();
      ctx.rect(L, T - 2, pw, ph + 4);
      ctx.clip();
      ctx.fillStyle = color;
      ctx.globalAlpha = 0.18;
      let run = [];
      let prevT = -Infinity;
      const flush = () => {
        if (run.length > 1) {
          ctx.beginPath();
          run.forEach((p, i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, X(p.t), Y(p.band[key][1])));
          for (let i = run.length - 1; i >= 0; i--) ctx.lineTo(X(run[i].t), Y(run[i].band[key][0]));
          ctx.closePath();
          ctx.fill();
        }
        run = [];
      };
      for (const p of pts) {
        if (p.t < t0 - intervalMs * 2) continue;
        if (!p.band || !p.band[key] || p.t - prevT > gap) flush();
        prevT = p.t;
        if (p.band && p.band[key]) run.push(p);
      }
      flush();
      ctx.restore();
    };
    for (const s of this.opts.series) band(s.key, palette[s.color]);

    const line = (get1, color, width, fill) => {
      const segs = [];
      let seg = null;
      let prevT = -Infinity;
      for (const p of pts) {
        if (p.t < t0 - intervalMs * 2) continue;
        const v = get1(p);
        if (v == null || p.t - prevT > gap) {
          if (seg && seg.length) segs.push(seg);
          seg = v == null ? null : [];
        }
        prevT = p.t;
        if (v == null) continue;
        if (!seg) seg = [];
        seg.push(X(p.t), Y(v));
      }
      if (seg && seg.length) segs.push(seg);
      ctx.save();
      ctx.beginPath();
      ctx.rect(L, T - 2, pw, ph + 4);
      ctx.clip();
      ctx.lineJoin = 'round';
      ctx.strokeStyle = color;
      ctx.fillStyle = color;
      ctx.lineWidth = width;
      for (const s of segs) {
        ctx.beginPath();
        ctx.moveTo(s[0], s[1]);
        for (let i = 2; i < s.length; i += 2) ctx.lineTo(s[i], s[i + 1]);
        if (s.length === 2) ctx.lineTo(s[0] + 1, s[1]);
        ctx.stroke();
        if (fill) {
          ctx.lineTo(s[s.length - 2], T + ph);
          ctx.lineTo(s[0], T + ph);
          ctx.closePath();
          ctx.globalAlpha = pts.length && pts[pts.length - 1].band ? 0.06 : 0.14;
          ctx.fill();
          ctx.globalAlpha = 1;
        }
      }
      ctx.restore();
      return segs.length;
    };

    if (this.opts.cores) {
      let n = 0;
      for (const p of pts) n = Math.max(n, p.per_core.length);
      for (let i = 0; i < n; i++) line((p) => (p.per_core[i] == null ? null : p.per_core[i]), palette.core, 1, false);
    }
    let drawn = 0;
    for (const s of this.opts.series) drawn += line((p) => p[s.key], palette[s.color], 1.75, s.fill);
    if (!drawn) {
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.fillText(pts.length ? 'No readings' : 'Waiting for data…', L + pw / 2, T + ph / 2);
    }
  }
}

export const charts = [
  ['#chart-cpu', { kind: 'pct', cores: true, series: [{ key: 'cpu', name: 'Total', color: 'cpu', fill: true }] }],
  ['#chart-mem', { kind: 'pct', series: [{ key: 'mem', name: 'RAM', color: 'mem', fill: true }, { key: 'swap', name: 'Swap', color: 'swap' }] }],
  ['#chart-temp', { kind: 'temp', series: [{ key: 'temp', name: 'CPU', color: 'temp', fill: true }] }],
  ['#chart-net', { kind: 'netrate', series: [{ key: 'net_recv', name: 'Received', color: 'rx', fill: true }, { key: 'net_sent', name: 'Sent', color: 'tx', fill: true }] }],
  ['#chart-disk', { kind: 'rate', series: [{ key: 'disk_read', name: 'Read', color: 'read', fill: true }, { key: 'disk_write', name: 'Write', color: 'write', fill: true }] }],
  ['#chart-wifi', { kind: 'dbm', series: [{ key: 'wifi_signal', name: 'Signal', color: 'rx' }] }],
].map(([sel, opts]) => new Chart($(sel), opts));

// Which charts are on screen (with a margin): only those are painted. Without
// IntersectionObserver every chart counts as on screen.
const onScreen = new Set(window.IntersectionObserver ? [] : charts);
if (window.IntersectionObserver) {
  const io = new IntersectionObserver((entries) => {
    for (const e of entries) {
      const chart = charts.find((c) => c.canvas === e.target);
      if (e.isIntersecting) onScreen.add(chart);
      else onScreen.delete(chart);
    }
    requestDraw();
  }, { rootMargin: '200px 0px' });
  for (const c of charts) io.observe(c.canvas);
}

let drawQueued = false;
export function requestDraw() {
  if (drawQueued) return;
  drawQueued = true;
  requestAnimationFrame(() => {
    drawQueued = false;
    const pts = chartPoints();
    for (const c of charts) c.draw(pts, onScreen.has(c));
  });
}
