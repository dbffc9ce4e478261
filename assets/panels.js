// Panels: fills the page from one document. Static fields are bound in the HTML with
// data-f="path.to.value" (and data-fmt); lists (cores, partitions, interfaces, processes,
// sensors, Pi flags) are keyed element groups that are reused from document to document.

import { DASH, FMT, clockTime, currentTemp, get, isNum, temperatureLevel } from './format.js';
import { $, KeyedList, h, makeMeter, setAttr, setMeter, setText, show, ui } from './dom.js';

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

const tempMeter = { el: ui.tileTempMeter, bar: ui.tileTempMeter.firstElementChild };
const tabIcon = document.querySelector('link[rel="icon"]');

// ---------------------------------------------------------------- lists

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

const fans = new KeyedList($('#fans tbody'), () => {
  const cells = [h('td'), h('td', { class: 'num' }), h('td', { class: 'num' })];
  return { root: h('tr', null, ...cells), cells };
}, $('#fans-empty'));

const disks = new KeyedList($('#disks tbody'), () => {
  const cells = [h('td'), h('td', { class: 'num' }), h('td'), h('td'), h('td')];
  return { root: h('tr', null, ...cells), cells };
}, $('#disks-empty'));

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

function fillBadge(el, value, [yes, yesLevel], [no, noLevel], unknown = DASH) {
  setText(el, value === true ? yes : value === false ? no : unknown);
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
    setText(item.rates, `↓ ${FMT.netrate(r.recv_bytes_per_sec)} · ↑ ${FMT.netrate(r.sent_bytes_per_sec)}`);
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

function renderFans(d) {
  const list = Array.isArray(get(d, ['temperature', 'fans'])) ? d.temperature.fans : [];
  fans.update(list.map((f, i) => [`${f.name}\u0000${f.label}\u0000${i}`, f]), (row, f) => {
    setText(row.cells[0], f.label ? `${FMT.text(f.name)} · ${f.label}` : FMT.text(f.name));
    setText(row.cells[1], isNum(f.rpm) ? `${FMT.int(f.rpm)} rpm` : DASH);
    const level = isNum(f.cooling_state) && isNum(f.cooling_max_state) && f.cooling_max_state > 0
      ? (f.cooling_state === 0 ? 'off' : `${f.cooling_state} of ${f.cooling_max_state}`)
      : isNum(f.pwm_percent) ? FMT.pct(f.pwm_percent) : DASH;
    setText(row.cells[2], level);
  });
}

/** What a card says about its wear, in words; SD cards say nothing. */
function wearText(card) {
  if (!card || typeof card !== 'object') return DASH;
  if (!isNum(card.life_time_used_percent) && !card.pre_eol) return 'not reported by this card';
  const parts = [];
  if (isNum(card.life_time_used_percent)) parts.push(`up to ${card.life_time_used_percent} % of rated life used`);
  if (card.pre_eol) parts.push(`reserve: ${card.pre_eol}`);
  return parts.join(' · ');
}

/** Bytes written today and the mean of the closed days the history kept (up to 30). */
function writtenText(dev) {
  if (!dev || !isNum(dev.written_today_bytes)) return DASH;
  const today = `written today ${FMT.bytes(dev.written_today_bytes)}`;
  const days = Array.isArray(dev.written_per_day) ? dev.written_per_day.filter((x) => x && isNum(x.bytes)) : [];
  if (!days.length) return today;
  const mean = days.reduce((sum, x) => sum + x.bytes, 0) / days.length;
  return `${today} · ${FMT.bytes(mean)}/day (${days.length}-day mean)`;
}

function renderDisks(d) {
  const map = get(d, ['disk', 'devices']);
  const entries = map && typeof map === 'object' ? Object.entries(map) : [];
  disks.update(entries.map(([name, dev]) => [name, [name, dev]]), (row, [name, dev]) => {
    const card = dev && dev.card && typeof dev.card === 'object' ? dev.card : null;
    setText(row.cells[0], name);
    setText(row.cells[1], isNum(dev && dev.written_bytes) ? FMT.bytes(dev.written_bytes) : DASH);
    setText(row.cells[2], card ? [card.type, card.name, card.date].filter(Boolean).join(' · ') : DASH);
    setText(row.cells[3], wearText(card));
    setText(row.cells[4], writtenText(dev));
    const pct = card ? card.life_time_used_percent : null;
    setAttr(row.cells[3], 'data-level', isNum(pct) && pct >= 90 ? 'crit' : isNum(pct) && pct >= 80 ? 'warn' : null);
  });
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
  setAttr(tempMeter.el, 'aria-label', `Temperature relative to the ${FMT.temp(85)} throttling limit`);
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
      // Pi Zero / Zero W and Compute Modules cannot see under-voltage: no "OK" for it.
      summary = pi.undervoltage_detection === false ? 'OK (under-voltage: not available on this board)' : 'OK';
      level = 'ok';
    }
  }
  for (const el of [ui.piSummary, ui.piPower]) {
    setText(el, summary);
    setAttr(el, 'data-level', level);
  }
  setText(ui.alert, alert);
  show(ui.alert, !!alert);
  // the tab (and a pinned tab) shows the alert too
  if (tabIcon) setAttr(tabIcon, 'href', alert ? 'favicon-alert.svg' : 'favicon.svg');
  if (pi) {
    const unknown = pi.undervoltage_detection === false ? 'not available' : DASH;
    piFlags.update(FLAGS.map((f) => [f[0], f]), (row, f) => {
      const na = f[0] === 'under_voltage' ? unknown : DASH;
      fillBadge(row.now, t ? t[f[0]] : null, ['Yes', 'crit'], ['No', 'ok'], na);
      fillBadge(row.since, t ? t[f[1]] : null, ['Yes', 'warn'], ['No', 'ok'], na);
    });
  }
}

function renderConnectivity(d) {
  const c = d.connectivity && typeof d.connectivity === 'object' ? d.connectivity : null;
  fillBadge(ui.connBadge, c ? c.connected : null, ['connected', 'ok'], ['disconnected', 'crit']);
  // The signal chart (live and long ranges) while the watched interface is wireless.
  show(ui.wifiChart, !!(c && c.wifi && typeof c.wifi === 'object'));
}

/** Shows document `d`: every field, list and header line. */
export function render(d) {
  for (const b of bindings) setText(b.el, b.fmt(get(d, b.path)));
  for (const m of meters) setMeter(m, get(d, m.path), m.levels);
  renderTemperature(d);
  renderCores(d);
  renderPartitions(d);
  renderInterfaces(d);
  renderProcesses(d);
  renderSensors(d);
  renderFans(d);
  renderDisks(d);
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
  setText(ui.updated, isNum(t) ? clockTime(t) : DASH);
}

const alertRules = new KeyedList($('#alert-rules tbody'), (key) => {
  const state = h('span', { class: 'badge' });
  const since = h('time');
  const cells = [h('th', { scope: 'row' }), h('td', null, state), h('td', { class: 'num' }), h('td'), h('td', null, since)];
  return { root: h('tr', { 'data-rule': key }, ...cells), cells, state, since };
}, $('#alert-rules-empty'));

const STATE_LEVEL = { firing: 'crit', pending: 'warn', ok: 'ok' };

/** A rule's value in its metric's unit (temperatures in the chosen one); flags say set or not. */
function alertValue(r, v) {
  if (!isNum(v)) return DASH;
  switch (r.metric) {
    case 'temperature': return FMT.temp(v);
    case 'load1': return FMT.load(v);
    case 'wifi_signal': return `${Math.round(v)} dBm`;
    case 'cpu': case 'memory': case 'swap': case 'disk': case 'wifi_quality': return FMT.pct(v);
    default: return v ? 'set' : 'not set';
  }
}

function alertCondition(r) {
  const c = r.condition || {};
  let text = c.kind === 'above' || c.kind === 'below'
    ? `${c.kind} ${alertValue(r, c.level)}` + (isNum(c.clear) && c.clear !== c.level ? `, clears at ${alertValue(r, c.clear)}` : '')
    : 'while set';
  const f = r.for_seconds;
  if (isNum(f) && f > 0) text += ' for ' + (f % 3600 === 0 ? `${f / 3600} h` : f % 60 === 0 ? `${f / 60} min` : FMT.dur(f));
  return text;
}

/** Every alert rule with its state (from /api/v1/alerts), and the banner of firing ones. */
export function renderAlerts(a) {
  const rules = a && Array.isArray(a.alerts) ? a.alerts.filter((r) => r && typeof r.name === 'string') : [];
  alertRules.update(rules.map((r) => [r.name, r]), (row, r) => {
    const label = r.mount ? `${r.name} (${r.mount})` : r.name;
    setText(row.cells[0], label);
    const state = typeof r.state === 'string' ? r.state : DASH;
    setText(row.state, state);
    setAttr(row.state, 'data-level', STATE_LEVEL[state] || '');
    setText(row.cells[2], alertValue(r, r.value));
    setText(row.cells[3], alertCondition(r));
    const t = typeof r.since === 'string' ? Date.parse(r.since) : NaN;
    setAttr(row.since, 'datetime', isNum(t) ? r.since : null);
    setText(row.since, isNum(t) ? FMT.date(r.since) : DASH);
  });
  const firingCount = rules.filter((r) => r.state === 'firing').length;
  setText(ui.alertsSummary, !rules.length ? DASH : firingCount ? `${firingCount} firing` : 'all OK');
  setAttr(ui.alertsSummary, 'data-level', !rules.length ? '' : firingCount ? 'crit' : 'ok');
  const firing = rules.filter((r) => r && r.state === 'firing');
  const text = firing.length
    ? 'Alert: ' + firing.map((r) => {
      // a flag's value is just 1; a level's value says how far it went
      const level = r.condition && r.condition.kind !== 'set' && isNum(r.value);
      return level ? `${r.name} (${Math.round(r.value * 10) / 10})` : r.name;
    }).join(', ')
    : '';
  setText(ui.alertsBanner, text);
  show(ui.alertsBanner, firing.length > 0);
}
