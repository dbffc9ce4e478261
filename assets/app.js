// pistats dashboard: the entry module. It wires the feed to the panels and the charts; each
// module holds one responsibility (prefs, format, dom, panels, history, charts, feed). Plain
// ES modules, no dependencies, no build step.

import { charts, readPalette, requestDraw } from './charts.js';
import { startFeed } from './feed.js';
import { addPoint, mergeHistory, pointFromDoc } from './history.js';
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

function onHistory(h) {
  mergeHistory(h);
  requestDraw();
}

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
