// pistats dashboard: the entry module. It wires the feed to the panels and the charts; each
// module holds one responsibility (prefs, format, dom, panels, history, charts, feed). Plain
// ES modules, no dependencies, no build step.

import { charts, readPalette, requestDraw } from './charts.js';
import { loadEvents } from './events.js';
import { apiGet, startFeed } from './feed.js';
import { addPoint, chartStepMs, mergeHistory, pointFromDoc, range, refreshRange, setRange } from './history.js';
import { render, renderAlerts } from './panels.js';
import { onPrefsChange, startPrefs } from './prefs.js';

let lastDoc = null;

function onDocument(d) {
  lastDoc = d;
  addPoint(pointFromDoc(d));
  // A hidden tab only records history; the DOM catches up when it is shown again.
  if (!document.hidden) {
    render(d);
    requestDraw();
  }
}

// Called on every (re)connect: the events may have moved on while the page was away.
function onHistory(h) {
  mergeHistory(h);
  requestDraw();
  loadEvents(apiGet).then(requestDraw);
}

// Points to ask for a longer range: the widest chart's width in CSS pixels (history.js bounds
// it), so a phone asks for about 400 and a desktop for about 700, not for 1,500.
const chartWidth = () => Math.max(0, ...charts.map((c) => c.canvas.clientWidth));

// The range selector: one range for every chart.
const rangeButtons = document.querySelectorAll('#ranges button[data-range]');
for (const button of rangeButtons) {
  button.addEventListener('click', async () => {
    for (const b of rangeButtons) b.setAttribute('aria-pressed', String(b === button));
    const loaded = setRange(button.dataset.range, apiGet, chartWidth());
    requestDraw(); // a range shown before is drawn at once from its kept reply
    await loaded;
    requestDraw();
  });
}

// Longer ranges and the events panel are refreshed while the page is shown: an aggregated
// range once per bucket (at least a minute apart), events every 10 s (a few KiB).
let lastRangeLoad = 0;
let lastEventsLoad = 0;
setInterval(async () => {
  if (document.hidden) return;
  const now = Date.now();
  if (now - lastEventsLoad >= 10000) {
    lastEventsLoad = now;
    loadEvents(apiGet).then(requestDraw);
  }
  if (range !== '10m' && now - lastRangeLoad >= Math.max(60000, chartStepMs())) {
    lastRangeLoad = now;
    await refreshRange(apiGet, chartWidth());
    requestDraw();
  }
}, 5000);

document.addEventListener('visibilitychange', () => {
  if (document.hidden) return;
  if (lastDoc) render(lastDoc);
  requestDraw();
});

// A new theme, unit or clock: the charts take the theme's colours, everything is shown again.
onPrefsChange(() => {
  readPalette();
  if (lastDoc) render(lastDoc);
  requestDraw();
});
startPrefs();
readPalette();
if (window.ResizeObserver) {
  const ro = new ResizeObserver(requestDraw);
  for (const c of charts) ro.observe(c.canvas);
} else {
  window.addEventListener('resize', requestDraw);
}

requestDraw();
startFeed({ onDocument, onHistory, onAlerts: renderAlerts });

// The offline shell (sw.js). Browsers allow service workers only in secure contexts: over
// HTTPS, or on the Pi itself (localhost); over plain HTTP on the LAN there is none.
if ('serviceWorker' in navigator && window.isSecureContext) {
  navigator.serviceWorker.register('sw.js').catch(() => {}); // the page works without it
}
