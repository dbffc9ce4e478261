// Feed: one WebSocket to the server that served this page, reconnecting with jittered
// exponential backoff; the access token (asked for once, remembered); and the history
// request that fills the charts on every (re)connect.

import { setAttr, setText, ui } from './dom.js';
import { WINDOW_MS, intervalMs } from './history.js';

const MAX_BACKOFF_MS = 10000;
const TOKEN_KEY = 'pistats.token';

// What the page does with what arrives: set by startFeed.
let handlers = { onDocument() {}, onHistory() {} };

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
    if (d && typeof d === 'object' && !Array.isArray(d)) handlers.onDocument(d);
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

/** GETs an API path with the token; the parsed reply, or null (asks for the token on 401). */
export async function apiGet(path) {
  try {
    const r = await fetch(apiUrl(path), { headers: authHeaders(), cache: 'no-store' });
    if (r.status === 401) {
      askForToken();
      return null;
    }
    return r.ok ? await r.json() : null;
  } catch (e) {
    return null; // server unreachable: the caller keeps what it has
  }
}

async function loadHistory() {
  try {
    const r = await fetch(apiUrl(`api/v1/history?seconds=${WINDOW_MS / 1000}`), { headers: authHeaders(), cache: 'no-store' });
    if (r.status === 401) {
      askForToken();
      return;
    }
    if (!r.ok) return;
    handlers.onHistory(await r.json());
  } catch (e) {
    // charts fill from the live feed instead
  }
}

// Alert rules and their state (/api/v1/alerts): polled, since alerts change rarely and the
// feed's document format stays as it is.
const ALERTS_EVERY_MS = 10000;

async function loadAlerts() {
  if (document.hidden || ui.conn.dataset.state === 'auth') return;
  try {
    const r = await fetch(apiUrl('api/v1/alerts'), { headers: authHeaders(), cache: 'no-store' });
    if (!r.ok) return; // 401 is handled by the feed's own check
    if (handlers.onAlerts) handlers.onAlerts(await r.json());
  } catch (e) {
    // no banner update this time
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

/**
 * Connects, and keeps connecting. `onDocument(d)` gets every document from the socket,
 * `onHistory(h)` every /api/v1/history reply, `onAlerts(a)` every /api/v1/alerts reply.
 */
export function startFeed(h) {
  handlers = h;
  setInterval(loadAlerts, ALERTS_EVERY_MS);
  document.addEventListener('visibilitychange', loadAlerts);
  loadAlerts();
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
    if (!document.hidden && ui.conn.dataset.state === 'offline') retryNow();
  });
  window.addEventListener('online', retryNow);
  connect();
}
