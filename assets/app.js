// pistats dashboard: one WebSocket to the server that served this page, a 10-minute history
// for the charts, and a DOM built once and then only patched (textContent, attributes), so a
// Pi Zero's browser keeps up. No dependencies, no build step.
'use strict';

(function () {
  const WINDOW_MS = 10 * 60 * 1000; // chart span, also the history we ask for on connect
  const MAX_BACKOFF_MS = 10000;
  const TOKEN_KEY = 'pistats.token';
  const DASH = '\u2014';

  // ---------------------------------------------------------------- formatting

  const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
  const GIB = 1024 * 1024 * 1024;
  const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

  function bytes(b) {
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

  function duration(s) {
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

  function dateTime(v) {
    const t = typeof v === 'string' ? Date.parse(v) : NaN;
    if (!isNum(t)) return DASH;
    return new Date(t).toLocaleString(undefined, {
      year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
    });
  }

  const FMT = {
    text: (v) => (v == null || v === '' || (typeof v === 'number' && !isNum(v)) ? DASH : String(v)),
    int: (v) => (isNum(v) ? Math.round(v).toLocaleString('en-US') : DASH),
    pct: (v) => (isNum(v) ? v.toFixed(1) + '%' : DASH),
    gib: (v) => (isNum(v) ? bytes(v * GIB) : DASH),
    bytes,
    rate: (v) => (isNum(v) && v >= 0 ? bytes(v) + '/s' : DASH),
    freq: (v) => (isNum(v) && v > 0 ? (v >= 1000 ? (v / 1000).toFixed(2) + ' GHz' : Math.round(v) + ' MHz') : DASH),
    temp: (v) => (isNum(v) ? v.toFixed(1) + ' °C' : DASH),
    volts: (v) => (isNum(v) ? v.toFixed(3) + ' V' : DASH),
    load: (v) => (isNum(v) ? v.toFixed(2) : DASH),
    dur: duration,
    date: dateTime,
    yesno: (v) => (v === true ? 'Yes' : v === false ? 'No' : DASH),
    list: (v) => (Array.isArray(v) && v.length ? v.join(', ') : DASH),
  };

  function temperatureLevel(c) {
    if (!isNum(c)) return { level: '', word: DASH };
    // The Pi firmware soft-limits at 80 °C and throttles hard at 85 °C.
    if (c >= 80) return { level: 'crit', word: 'Critical: throttling likely' };
    if (c >= 70) return { level: 'hot', word: 'Hot' };
    if (c >= 60) return { level: 'warm', word: 'Warm' };
    return { level: 'ok', word: 'Normal' };
  }

  // ---------------------------------------------------------------- DOM helpers

  const $ = (sel) => document.querySelector(sel);

  function get(obj, path) {
    for (const k of path) {
      if (obj == null) return undefined;
      obj = obj[k];
    }
    return obj;
  }

  // Writes only when the text changed: no needless layout or mutation events.
  function setText(el, s) {
    if (el._text !== s) {
      el._text = s;
      el.textContent = s;
    }
  }

  function setAttr(el, name, value) {
    if (value == null) {
      if (el.hasAttribute(name)) el.removeAttribute(name);
    } else if (el.getAttribute(name) !== value) {
      el.setAttribute(name, value);
    }
  }

  function show(el, visible) {
    if (el.hidden === visible) el.hidden = !visible;
  }

  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (k === 'class') el.className = v;
        else if (k === 'text') el.textContent = v;
        else el.setAttribute(k, v);
      }
    }
    for (const kid of kids) if (kid != null) el.append(kid);
    return el;
  }

  function makeMeter(label) {
    const el = h('div', { class: 'meter', role: 'meter', 'aria-label': label, 'aria-valuemin': '0', 'aria-valuemax': '100' }, h('span'));
    return { el, bar: el.firstChild };
  }

  // value is a percentage; levels colour full disks and saturated memory.
  function setMeter(m, value, levels = true) {
    const ok = isNum(value);
    const v = ok ? Math.max(0, Math.min(100, value)) : 0;
    const key = ok ? v.toFixed(1) : '';
    if (m._key === key) return;
    m._key = key;
    m.bar.style.transform = `scaleX(${v / 100})`;
    setAttr(m.el, 'aria-valuenow', ok ? key : null);
    setAttr(m.el, 'data-level', levels && ok ? (v >= 90 ? 'crit' : v >= 75 ? 'warn' : '') : '');
  }

  // Reuses one element group per key; touches the DOM order only when the key set changes.
  class KeyedList {
    constructor(container, create, empty) {
      this.container = container;
      this.create = create;
      this.empty = empty;
      this.items = new Map();
      this.signature = null;
    }

    update(entries, fill) {
      const signature = entries.map((e) => e[0]).join('\u0000');
      if (signature !== this.signature) {
        const next = new Map();
        for (const [key] of entries) next.set(key, this.items.get(key) || this.create(key));
        this.container.replaceChildren(...Array.from(next.values(), (item) => item.root));
        this.items = next;
        this.signature = signature;
        if (this.empty) show(this.empty, entries.length === 0);
      }
      for (const [key, data] of entries) fill(this.items.get(key), data, key);
    }
  }

  // ---------------------------------------------------------------- static bindings

  // Every element with data-f="path.to.value" (and optional data-fmt) is filled from each
  // document; this covers most of the page without per-field code.
  const bindings = Array.from(document.querySelectorAll('[data-f]'), (el) => ({
    el,
    path: el.dataset.f.split('.'),
    fmt: FMT[el.dataset.fmt || 'text'] || FMT.text,
  }));
  const meters = Array.from(document.querySelectorAll('[data-meter]'), (el) => ({
    el,
    bar: el.firstElementChild,
    path: el.dataset.meter.split('.'),
    levels: el.dataset.levels !== 'off',
  }));

  // Every element with an id, by camel-cased id: ui.connText is #conn-text.
  const ui = {};
  for (const el of document.querySelectorAll('[id]')) ui[el.id.replace(/-(\w)/g, (_, c) => c.toUpperCase())] = el;
  const tempMeter = { el: ui.tileTempMeter, bar: ui.tileTempMeter.firstElementChild };

  // ---------------------------------------------------------------- dynamic sections

  const cores = new KeyedList($('#cores'), (key) => {
    const meter = makeMeter(`Core ${key} usage`);
    const val = h('span', { class: 'val', text: DASH });
    const root = h('li', { 'data-core': key }, h('span', { class: 'name', text: `Core ${key}` }), meter.el, val);
    return { root, meter, val };
  });

  const partitions = new KeyedList($('#partitions'), (key) => {
    const mount = h('span', { class: 'mount' });
    const pct = h('span', { class: 'pct' });
    const dev = h('div', { class: 'dev' });
    const meter = makeMeter('Used');
    const use = h('div', { class: 'use' });
    const root = h('li', { 'data-mount': key }, h('div', { class: 'row1' }, mount, pct), dev, meter.el, use);
    return { root, mount, pct, dev, meter, use };
  }, $('#partitions-empty'));

  const ifaces = new KeyedList($('#ifaces'), (key) => {
    const badge = h('span', { class: 'badge' });
    const rates = h('span', { class: 'rates' });
    const meta = h('div', { class: 'meta' });
    const addrs = h('ul', { class: 'addrs', 'aria-label': `Addresses of ${key}` });
    const root = h('li', { 'data-iface': key },
      h('div', { class: 'row1' }, h('span', { class: 'name', text: key }), badge, rates), meta, addrs);
    return { root, badge, rates, meta, addrs, addrKey: null };
  }, $('#ifaces-empty'));

  const procs = new KeyedList($('#procs tbody'), () => {
    const cells = ['pid num', 'name', 'num', 'num mem'].map((c) => h('td', { class: c }));
    const meter = makeMeter('CPU');
    const cpuVal = h('span');
    cells[2].append(h('span', { class: 'cpu-cell' }, meter.el, cpuVal));
    return { root: h('tr', null, ...cells), cells, meter, cpuVal };
  }, $('#procs-empty'));

  const sensors = new KeyedList($('#sensors tbody'), () => {
    const cells = [h('td'), h('td', { class: 'num' }), h('td', { class: 'num' }), h('td', { class: 'num' })];
    return { root: h('tr', null, ...cells), cells };
  }, $('#sensors-empty'));

  // [flag now, flag since boot, label]
  const FLAGS = [
    ['under_voltage', 'under_voltage_occurred', 'Under-voltage'],
    ['arm_frequency_capped', 'arm_frequency_capping_occurred', 'Frequency capped'],
    ['throttled', 'throttling_occurred', 'Throttled'],
    ['soft_temperature_limit', 'soft_temperature_limit_occurred', 'Soft temperature limit'],
  ];
  const piFlags = new KeyedList($('#pi-flags tbody'), (key) => {
    const now = h('span', { class: 'badge' });
    const since = h('span', { class: 'badge' });
    const label = FLAGS.find((f) => f[0] === key)[2];
    const root = h('tr', { 'data-flag': key }, h('td', { text: label }), h('td', null, now), h('td', null, since));
    return { root, now, since };
  });

  function fillBadge(el, value, [yes, yesLevel], [no, noLevel]) {
    setText(el, value === true ? yes : value === false ? no : DASH);
    setAttr(el, 'data-level', value === true ? yesLevel : value === false ? noLevel : '');
  }

  function renderCores(d) {
    const per = Array.isArray(get(d, ['cpu', 'per_core_usage'])) ? d.cpu.per_core_usage : [];
    cores.update(per.map((v, i) => [String(i), v]), (item, v) => {
      setText(item.val, FMT.pct(v));
      setMeter(item.meter, v, false);
    });
  }

  function renderPartitions(d) {
    const list = Array.isArray(get(d, ['disk', 'partitions'])) ? d.disk.partitions : [];
    partitions.update(list.map((p) => [String(p.mountpoint) + '\u0000' + String(p.device), p]), (item, p) => {
      setText(item.mount, FMT.text(p.mountpoint));
      setText(item.pct, FMT.pct(p.used_percent));
      setText(item.dev, `${FMT.text(p.device)} · ${FMT.text(p.fstype)}`);
      setText(item.use, `${FMT.gib(p.used_gb)} used of ${FMT.gib(p.total_gb)} · ${FMT.gib(p.free_gb)} free`);
      setAttr(item.meter.el, 'aria-label', `${FMT.text(p.mountpoint)} used`);
      setMeter(item.meter, p.used_percent);
    });
    const root = list.find((p) => p.mountpoint === '/');
    setText(ui.tileRootFree, root ? `${FMT.gib(root.free_gb)} free` : DASH);
  }

  function renderInterfaces(d) {
    const map = get(d, ['network', 'interfaces']) || {};
    // Loopback last: it is rarely what anyone looks for.
    const names = Object.keys(map).sort((a, b) => (a === 'lo') - (b === 'lo') || (a < b ? -1 : a > b ? 1 : 0));
    ifaces.update(names.map((n) => [n, map[n] || {}]), (item, i) => {
      fillBadge(item.badge, i.is_up, ['up', 'ok'], ['down', '']);
      const r = i.rates || {};
      setText(item.rates, `↓ ${FMT.rate(r.recv_bytes_per_sec)} · ↑ ${FMT.rate(r.sent_bytes_per_sec)}`);
      const speed = isNum(i.speed_mbps) ? `${i.speed_mbps} Mb/s` : DASH;
      setText(item.meta, `MAC ${FMT.text(i.mac)} · MTU ${FMT.text(i.mtu)} · ${speed}`);
      const addrs = Array.isArray(i.addresses) ? i.addresses : [];
      const key = addrs.map((a) => `${a.family} ${a.address}/${a.prefix_len}`).join('|');
      if (key !== item.addrKey) {
        item.addrKey = key;
        item.addrs.replaceChildren(...(addrs.length
          ? addrs.map((a) => h('li', null, h('span', { class: 'fam', text: a.family === 'ipv6' ? 'IPv6' : 'IPv4' }),
            `${FMT.text(a.address)}/${FMT.text(a.prefix_len)}`))
          : [h('li', { class: 'muted', text: 'No addresses' })]));
      }
    });
  }

  function renderProcesses(d) {
    const list = Array.isArray(get(d, ['processes', 'top_cpu_usage'])) ? d.processes.top_cpu_usage : [];
    // Rows keyed by position: the order changes every tick, the row count rarely does.
    procs.update(list.map((p, i) => [String(i), p]), (row, p) => {
      setText(row.cells[0], FMT.text(p.pid));
      setText(row.cells[1], FMT.text(p.name));
      setAttr(row.cells[1], 'title', p.name == null ? null : String(p.name));
      setText(row.cpuVal, FMT.pct(p.cpu_percent));
      setMeter(row.meter, p.cpu_percent, false);
      setText(row.cells[3], FMT.pct(p.memory_percent));
    });
  }

  function renderSensors(d) {
    const chips = get(d, ['temperature', 'sensors']) || {};
    const entries = [];
    for (const chip of Object.keys(chips)) {
      const readings = Array.isArray(chips[chip]) ? chips[chip] : [];
      readings.forEach((r, i) => entries.push([`${chip}\u0000${i}`, { chip, r }]));
    }
    sensors.update(entries, (row, { chip, r }) => {
      setText(row.cells[0], r.label ? `${chip} · ${r.label}` : chip);
      setText(row.cells[1], FMT.temp(r.current));
      setText(row.cells[2], FMT.temp(r.high));
      setText(row.cells[3], FMT.temp(r.critical));
      const level = isNum(r.current) && isNum(r.critical) && r.current >= r.critical ? 'crit'
        : isNum(r.current) && isNum(r.high) && r.current >= r.high ? 'warn' : null;
      setAttr(row.cells[1], 'data-level', level);
    });
  }

  function currentTemp(d) {
    const flat = d.temperature_celsius;
    return isNum(flat) ? flat : get(d, ['temperature', 'pi_cpu_celsius']);
  }

  function renderTemperature(d) {
    const c = currentTemp(d);
    const { level, word } = temperatureLevel(c);
    for (const el of [ui.temp, ui.tileTemp]) {
      setText(el, FMT.temp(c));
      setAttr(el, 'data-level', level);
    }
    setText(ui.tempLegend, FMT.temp(c));
    setText(ui.tempLevel, word);
    setText(ui.tileTempLevel, word);
    setMeter(tempMeter, isNum(c) ? (c / 85) * 100 : null, false);
    setAttr(tempMeter.el, 'data-level', level);
    setAttr(tempMeter.el, 'aria-valuetext', FMT.temp(c));
  }

  function renderPi(d) {
    const pi = d.pi && typeof d.pi === 'object' ? d.pi : null;
    show(ui.pi, !!pi);
    const t = pi && pi.throttled && typeof pi.throttled === 'object' ? pi.throttled : null;
    let summary = DASH;
    let level = '';
    let alert = '';
    if (t) {
      const now = FLAGS.filter((f) => t[f[0]] === true).map((f) => f[2].toLowerCase());
      const past = FLAGS.filter((f) => t[f[1]] === true).map((f) => f[2].toLowerCase());
      if (now.length) {
        summary = 'Now: ' + now.join(', ');
        level = 'crit';
        alert = t.under_voltage
          ? 'Under-voltage detected: the power supply cannot keep up. Use a stronger supply or a shorter cable.'
          : `The Raspberry Pi is limiting itself: ${now.join(', ')}.`;
      } else if (past.length) {
        summary = 'Since boot: ' + past.join(', ');
        level = 'warn';
      } else {
        summary = 'OK';
        level = 'ok';
      }
    }
    for (const el of [ui.piSummary, ui.piPower]) {
      setText(el, summary);
      setAttr(el, 'data-level', level);
    }
    setText(ui.alert, alert);
    show(ui.alert, !!alert);
    if (pi) {
      piFlags.update(FLAGS.map((f) => [f[0], f]), (row, f) => {
        fillBadge(row.now, t ? t[f[0]] : null, ['Yes', 'crit'], ['No', 'ok']);
        fillBadge(row.since, t ? t[f[1]] : null, ['Yes', 'warn'], ['No', 'ok']);
      });
    }
  }

  function renderConnectivity(d) {
    const c = d.connectivity && typeof d.connectivity === 'object' ? d.connectivity : null;
    fillBadge(ui.connBadge, c ? c.connected : null, ['connected', 'ok'], ['disconnected', 'crit']);
  }

  let lastDoc = null;

  function render(d) {
    for (const b of bindings) setText(b.el, b.fmt(get(d, b.path)));
    for (const m of meters) setMeter(m, get(d, m.path), m.levels);
    renderTemperature(d);
    renderCores(d);
    renderPartitions(d);
    renderInterfaces(d);
    renderProcesses(d);
    renderSensors(d);
    renderPi(d);
    renderConnectivity(d);
    const f = get(d, ['cpu', 'frequency_mhz']) || {};
    const lo = FMT.freq(f.min);
    const hi = FMT.freq(f.max);
    setText(ui.freqRange, lo === DASH && hi === DASH ? DASH : `${lo} – ${hi}`);
    const sys = d.system || {};
    // the header names the machine when it is known, and stays quiet otherwise
    setText(ui.subtitle, String(sys.model || sys.os || ''));
    const host = typeof sys.hostname === 'string' && sys.hostname ? sys.hostname : null;
    setText(ui.host, host || '');
    const title = host ? `${host} · pistats` : 'pistats';
    if (document.title !== title) document.title = title;
    const t = Date.parse(d.timestamp);
    setAttr(ui.updated, 'datetime', isNum(t) ? d.timestamp : null);
    setText(ui.updated, isNum(t) ? new Date(t).toLocaleTimeString() : DASH);
  }

  // ---------------------------------------------------------------- history

  let points = []; // oldest first; same shape as /api/v1/history points
  let intervalMs = 1000;
  const nz = (v) => (isNum(v) ? v : null);

  const SERIES = ['cpu', 'mem', 'swap', 'temp', 'net_recv', 'net_sent', 'disk_read', 'disk_write'];

  function normalizePoint(p) {
    const out = { t: p.t, per_core: Array.isArray(p.per_core) ? p.per_core.map(nz) : [] };
    for (const k of SERIES) out[k] = nz(p[k]);
    return out;
  }

  function pointFromDoc(d) {
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

  function addPoint(p) {
    if (!isNum(p.t)) return;
    const last = points[points.length - 1];
    if (last && p.t <= last.t) return; // already covered by the history reply
    points.push(p);
    trim();
  }

  // Server history replaces what we have for its span; older local points survive a server
  // restart (the new server's history starts empty) and show up left of a gap.
  function mergeHistory(h) {
    if (h && isNum(h.interval_ms) && h.interval_ms > 0) intervalMs = h.interval_ms;
    const hist = (h && Array.isArray(h.points) ? h.points : []).filter((p) => p && isNum(p.t)).map(normalizePoint);
    if (!hist.length) return;
    const first = hist[0].t;
    const last = hist[hist.length - 1].t;
    points = points.filter((p) => p.t < first).concat(hist, points.filter((p) => p.t > last));
    trim();
  }

  // ---------------------------------------------------------------- charts

  let palette = {};
  const CHART_FONT = '11px ' + getComputedStyle(document.body).fontFamily;

  function readPalette() {
    const cs = getComputedStyle(document.documentElement);
    palette = {};
    for (const name of ['cpu', 'core', 'mem', 'swap', 'temp', 'rx', 'tx', 'read', 'write', 'grid', 'axis']) {
      palette[name] = cs.getPropertyValue('--c-' + name).trim() || '#888';
    }
  }

  function niceStep(x) {
    const p = Math.pow(10, Math.floor(Math.log10(x)));
    const f = x / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
  }

  // Axis for bytes/s: steps are round numbers in the unit the maximum is shown in.
  function rateAxis(max) {
    let unit = 1;
    while (max / unit >= 1024 && unit < Math.pow(1024, 4)) unit *= 1024;
    const step = niceStep(Math.max(max / unit, 1) / 4) * unit;
    const hi = Math.max(step, Math.ceil(max / step) * step);
    const ticks = [];
    for (let v = 0; v <= hi + step / 2; v += step) ticks.push(v);
    return { lo: 0, hi, ticks, label: (v) => (v === 0 ? '0' : bytes(v).replace(/\.0+ /, ' ') + '/s') };
  }

  function tempAxis(min, max) {
    if (!isNum(min)) {
      min = 30;
      max = 60;
    }
    let lo = Math.floor((min - 2) / 10) * 10;
    let hi = Math.ceil((max + 2) / 10) * 10;
    if (hi - lo < 20) hi = lo + 20;
    const step = hi - lo > 60 ? 20 : 10;
    const ticks = [];
    for (let v = lo; v <= hi; v += step) ticks.push(v);
    return { lo, hi: ticks[ticks.length - 1], ticks, label: (v) => v + ' °C' };
  }

  const PCT_AXIS = { lo: 0, hi: 100, ticks: [0, 25, 50, 75, 100], label: (v) => v + '%' };

  class Chart {
    constructor(canvas, opts) {
      this.canvas = canvas;
      this.ctx = canvas.getContext('2d');
      this.opts = opts;
    }

    axis(pts, t0) {
      if (this.opts.kind === 'pct') return PCT_AXIS;
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
      if (this.opts.kind === 'temp') return max === -Infinity ? tempAxis() : tempAxis(min, max);
      return rateAxis(max > 0 ? max : 1024);
    }

    draw(pts) {
      const c = this.canvas;
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
      ctx.font = CHART_FONT;

      const tEnd = pts.length ? pts[pts.length - 1].t : Date.now();
      const t0 = tEnd - WINDOW_MS;
      const ax = this.axis(pts, t0);
      const labels = ax.ticks.map(ax.label);
      const L = Math.ceil(Math.max(...labels.map((s) => ctx.measureText(s).width))) + 10;
      const R = 4;
      const T = 8;
      const B = 20;
      const pw = w - L - R;
      const ph = hgt - T - B;
      if (pw <= 10 || ph <= 10) return;
      // what the chart holds, for tests: number of points and the oldest one's time
      const visible = pts.filter((p) => p.t >= t0);
      setAttr(c, 'data-points', String(visible.length));
      setAttr(c, 'data-since', visible.length ? String(visible[0].t) : null);
      const X = (t) => L + ((t - t0) / WINDOW_MS) * pw;
      const Y = (v) => T + ph - ((Math.max(ax.lo, Math.min(ax.hi, v)) - ax.lo) / (ax.hi - ax.lo)) * ph;

      // grid and axes labels
      ctx.lineWidth = 1;
      ctx.strokeStyle = palette.grid;
      ctx.fillStyle = palette.axis;
      ctx.textAlign = 'right';
      ctx.textBaseline = 'middle';
      ax.ticks.forEach((v, i) => {
        const y = Math.round(Y(v)) + 0.5;
        ctx.beginPath();
        ctx.moveTo(L, y);
        ctx.lineTo(L + pw, y);
        ctx.stroke();
        ctx.fillText(labels[i], L - 6, y);
      });
      ctx.textBaseline = 'alphabetic';
      const stepMin = pw < 380 ? 5 : 2;
      for (let m = 10; m >= 0; m -= stepMin) {
        const x = X(tEnd - m * 60000);
        ctx.textAlign = m === 10 ? 'left' : m === 0 ? 'right' : 'center';
        ctx.fillText(m === 0 ? 'now' : `−${m} min`, x, hgt - 4);
      }

      // data; a gap in time (server down, tab asleep) breaks the line
      const gap = Math.max(intervalMs * 3.5, 3000);
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
            ctx.globalAlpha = 0.14;
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

  const charts = [
    ['#chart-cpu', { kind: 'pct', cores: true, series: [{ key: 'cpu', color: 'cpu', fill: true }] }],
    ['#chart-mem', { kind: 'pct', series: [{ key: 'mem', color: 'mem', fill: true }, { key: 'swap', color: 'swap' }] }],
    ['#chart-temp', { kind: 'temp', series: [{ key: 'temp', color: 'temp', fill: true }] }],
    ['#chart-net', { kind: 'rate', series: [{ key: 'net_recv', color: 'rx', fill: true }, { key: 'net_sent', color: 'tx', fill: true }] }],
    ['#chart-disk', { kind: 'rate', series: [{ key: 'disk_read', color: 'read', fill: true }, { key: 'disk_write', color: 'write', fill: true }] }],
  ].map(([sel, opts]) => new Chart($(sel), opts));

  let drawQueued = false;
  function requestDraw() {
    if (drawQueued) return;
    drawQueued = true;
    requestAnimationFrame(() => {
      drawQueued = false;
      for (const c of charts) c.draw(points);
    });
  }

  // ---------------------------------------------------------------- token

  let token = '';
  try {
    token = localStorage.getItem(TOKEN_KEY) || '';
  } catch (e) {} // storage disabled: ask every time
  // A bookmark like http://pi:8765/?token=… stores the token and drops it from the address bar.
  {
    const url = new URL(location.href);
    const fromUrl = url.searchParams.get('token');
    if (fromUrl) {
      saveToken(fromUrl);
      url.searchParams.delete('token');
      history.replaceState(null, '', url.pathname + url.search + url.hash);
    }
  }

  function saveToken(t) {
    token = t;
    try {
      localStorage.setItem(TOKEN_KEY, t);
    } catch (e) {} // storage disabled: the token lives for this page only
  }

  const authHeaders = () => (token ? { Authorization: 'Bearer ' + token } : {});

  // Relative to the page, so the dashboard also works behind a reverse proxy's sub-path.
  const apiUrl = (path) => new URL(path, location.href).href;

  function wsUrl() {
    const u = new URL('ws', location.href);
    u.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    u.search = token ? '?token=' + encodeURIComponent(token) : '';
    u.hash = '';
    return u.href;
  }

  // ---------------------------------------------------------------- connection

  const STATE_TEXT = {
    connecting: 'Connecting…',
    connected: 'Live',
    offline: 'Offline',
    auth: 'Token required',
  };

  const conn = { ws: null, attempt: 0, retryTimer: 0, tickTimer: 0, due: 0, lastMessage: 0 };

  function setState(state) {
    setAttr(ui.conn, 'data-state', state);
    setAttr(document.body, 'data-conn', state);
    setText(ui.connText, STATE_TEXT[state]);
    clearInterval(conn.tickTimer);
    if (state === 'offline') {
      const tick = () => {
        const s = Math.max(0, Math.ceil((conn.due - Date.now()) / 1000));
        setText(ui.connDetail, s ? `retrying in ${s} s` : 'retrying…');
      };
      tick();
      conn.tickTimer = setInterval(tick, 1000);
    } else {
      setText(ui.connDetail, '');
    }
  }

  function dropSocket() {
    const ws = conn.ws;
    conn.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      ws.close();
    }
  }

  function connect() {
    clearTimeout(conn.retryTimer);
    dropSocket();
    if (ui.conn.dataset.state === 'offline') {
      // stay "Offline" while retrying, so screen readers are not told of every attempt
      clearInterval(conn.tickTimer);
      setText(ui.connDetail, 'connecting…');
    } else {
      setState('connecting');
    }
    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch (e) {
      scheduleRetry();
      return;
    }
    conn.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      conn.attempt = 0;
      conn.lastMessage = Date.now();
      setState('connected');
      loadHistory();
    };
    ws.onmessage = (ev) => {
      conn.lastMessage = Date.now();
      let d;
      try {
        d = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      if (d && typeof d === 'object' && !Array.isArray(d)) onDocument(d);
    };
    ws.onclose = () => {
      if (conn.ws !== ws) return;
      conn.ws = null;
      // A refused upgrade looks like any failed connection; ask the API whether it was the token.
      if (opened) scheduleRetry();
      else probeAuth();
    };
  }

  async function probeAuth() {
    try {
      const r = await fetch(apiUrl('api/v1/stats'), { headers: authHeaders(), cache: 'no-store' });
      if (r.status === 401) {
        askForToken();
        return;
      }
    } catch (e) {
      // server unreachable: retry below
    }
    scheduleRetry();
  }

  function scheduleRetry() {
    clearTimeout(conn.retryTimer);
    const base = Math.min(MAX_BACKOFF_MS, 500 * Math.pow(2, conn.attempt));
    conn.attempt = Math.min(conn.attempt + 1, 10);
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    conn.due = Date.now() + delay;
    conn.retryTimer = setTimeout(connect, delay);
    setState('offline');
  }

  function retryNow() {
    if (conn.ws || ui.conn.dataset.state === 'auth') return;
    conn.attempt = 0;
    connect();
  }

  async function loadHistory() {
    try {
      const r = await fetch(apiUrl(`api/v1/history?seconds=${WINDOW_MS / 1000}`), { headers: authHeaders(), cache: 'no-store' });
      if (r.status === 401) {
        askForToken();
        return;
      }
      if (!r.ok) return;
      mergeHistory(await r.json());
      requestDraw();
    } catch (e) {
      // charts fill from the live feed instead
    }
  }

  function askForToken() {
    clearTimeout(conn.retryTimer);
    dropSocket();
    setState('auth');
    setText(ui.authMsg, token
      ? 'The saved access token was not accepted. Enter the current one.'
      : 'This pistats is protected. Enter the access token from its configuration.');
    if (ui.auth.hidden) {
      ui.auth.hidden = false;
      ui.authToken.focus();
    }
  }

  ui.auth.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = ui.authToken.value.trim();
    if (!t) return;
    saveToken(t);
    ui.authToken.value = '';
    ui.auth.hidden = true;
    conn.attempt = 0;
    connect();
  });

  function onDocument(d) {
    lastDoc = d;
    addPoint(pointFromDoc(d));
    // A hidden tab only records history; the DOM catches up when it is shown again.
    if (!document.hidden) {
      render(d);
      requestDraw();
    }
  }

  // A silent network drop can leave the socket "open" for minutes: if nothing arrived for a
  // while, start over.
  setInterval(() => {
    if (conn.ws && conn.ws.readyState === WebSocket.OPEN &&
        Date.now() - conn.lastMessage > Math.max(10000, intervalMs * 5)) {
      dropSocket();
      scheduleRetry();
    }
  }, 2000);

  document.addEventListener('visibilitychange', () => {
    if (document.hidden) return;
    if (lastDoc) render(lastDoc);
    requestDraw();
    if (ui.conn.dataset.state === 'offline') retryNow();
  });
  window.addEventListener('online', retryNow);

  readPalette();
  const scheme = window.matchMedia('(prefers-color-scheme: dark)');
  const onScheme = () => {
    readPalette();
    requestDraw();
  };
  if (scheme.addEventListener) scheme.addEventListener('change', onScheme);
  if (window.ResizeObserver) {
    const ro = new ResizeObserver(requestDraw);
    for (const c of charts) ro.observe(c.canvas);
  } else {
    window.addEventListener('resize', requestDraw);
  }

  requestDraw();
  connect();
})();
