// The offline shell. When the Pi does not answer, the installed app still opens (and says it
// is offline and retrying) instead of showing the browser's error page. Browsers run service
// workers only in secure contexts, so this works when pistats serves HTTPS (tls_cert).
//
// Only the page's own files are handled, always from the Pi first: an upgraded pistats shows
// its new files at once, and the copy kept here is used only when the Pi does not answer.
// The API, the metrics and the feed never go through here.
'use strict';

const CACHE = 'pistats-shell-1';
const SHELL = [
  './', 'style.css', 'theme.js', 'app.js', 'prefs.js', 'format.js', 'dom.js', 'history.js',
  'charts.js', 'events.js', 'panels.js', 'feed.js', 'favicon.svg', 'favicon-alert.svg', 'manifest.webmanifest',
];
const TIMEOUT_MS = 4000; // a Pi gone from weak Wi-Fi may not even refuse: give up waiting

const scope = new URL(self.registration.scope);
const shellUrls = new Set(SHELL.map((f) => new URL(f, scope).href));

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

self.addEventListener('fetch', (event) => {
  const req = event.request;
  const url = new URL(req.url);
  url.search = ''; // ?token=… on the first visit
  url.hash = '';
  if (req.method !== 'GET' || !shellUrls.has(url.href)) return;
  event.respondWith(fromPi(req, url.href));
});

async function fromPi(req, key) {
  const cache = await caches.open(CACHE);
  try {
    const res = await Promise.race([
      fetch(req),
      new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), TIMEOUT_MS)),
    ]);
    if (res.ok) await cache.put(key, res.clone());
    return res;
  } catch (err) {
    const copy = await cache.match(key);
    if (copy) return copy;
    throw err;
  }
}
