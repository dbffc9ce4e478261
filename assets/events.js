// Events: the timeline of what happened (under-voltage, throttling, temperature, restarts…)
// from /api/v1/events, shown newest first in the events panel; warnings and critical events
// are also marked on the charts.

import { $, setText } from './dom.js';

/** How many events the panel lists. */
const SHOWN = 50;

let events = [];
let lastSeq = -1;

/** Warning and critical events, for the charts' markers: { t, severity }. */
export function markers() {
  return events.filter((e) => e.severity !== 'info').map((e) => ({ t: e.t_ms, severity: e.severity }));
}

const time = (ms) => new Date(ms).toLocaleString([], { dateStyle: 'short', timeStyle: 'medium' });

function render() {
  const list = $('#events-list');
  const newest = events.length ? events[events.length - 1].seq : 0;
  if (newest === lastSeq) return;
  lastSeq = newest;
  list.replaceChildren(...events.slice().reverse().map((e) => {
    const li = document.createElement('li');
    li.dataset.kind = e.kind;
    li.dataset.severity = e.severity;
    const when = document.createElement('time');
    when.dateTime = e.t;
    when.textContent = time(e.t_ms);
    const what = document.createElement('span');
    what.textContent = e.message;
    li.append(when, what);
    return li;
  }));
  setText($('#events-empty'), events.length ? '' : 'No events recorded yet.');
}

/** Fetches the newest events; `getJson(path)` resolves to the reply or null. */
export async function loadEvents(getJson) {
  const reply = await getJson(`api/v1/events?limit=${SHOWN}`);
  if (!reply || !Array.isArray(reply.events)) return false;
  events = reply.events.filter((e) => e && typeof e.kind === 'string' && Number.isFinite(e.t_ms));
  render();
  return true;
}
