// Shared by the dashboard test files: the real pistats binary on a free loopback port, and
// Debian's headless Chromium through playwright-core, with pages that record console errors,
// requests and WebSocket frames.
'use strict';

const { before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { chromium } = require('playwright-core');

const REPO = path.resolve(__dirname, '..', '..');
const BIN = process.env.PISTATS_BIN || path.join(REPO, 'target', 'debug', 'pistats');
const ASSETS = path.join(REPO, 'assets');
const OUT = path.join(__dirname, 'out');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const DASH = '\u2014';
const CHROMIUM_ARGS = [
  '--no-sandbox', '--headless', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];


// ------------------------------------------------------------------ the daemon

const running = new Set();

function cleanEnv() {
  const env = { NO_COLOR: '1', RUST_LOG: 'info' };
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('PISTATS_') && k !== 'RUST_LOG') env[k] = v;
  }
  return env;
}

/** Starts pistats on 127.0.0.1 (port 0 = any free port); resolves once it is listening. */
function startOnce(port, extra, env = {}) {
  return new Promise((resolve, reject) => {
    const args = ['--host', '127.0.0.1', '--port', String(port), '--assets-dir', ASSETS, '--interval', '500ms', ...extra];
    const proc = spawn(BIN, args, { env: { ...cleanEnv(), ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    let done = false;
    const timer = setTimeout(() => finish(new Error(`pistats did not report listening within 20 s:\n${log}`)), 20000);
    function finish(err, addr) {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) {
        proc.kill('SIGKILL');
        reject(err);
      } else {
        resolve(addr);
      }
    }
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (chunk) => {
      log += chunk;
      const m = log.replace(/\x1b\[[0-9;]*m/g, '').match(/listening on (\S+)/);
      if (m) {
        const server = {
          proc,
          addr: m[1],
          port: Number(m[1].split(':').pop()),
          url: `http://${m[1]}/`,
          log: () => log,
          exited: new Promise((r) => proc.once('exit', r)),
        };
        running.add(server);
        server.exited.then(() => running.delete(server));
        finish(null, server);
      }
    });
    proc.once('error', (err) => finish(err));
    proc.once('exit', (code, signal) => finish(new Error(`pistats exited (${code ?? signal}) before listening:\n${log}`)));
  });
}

/** Like startOnce, but on a fixed port retries while the old socket is being released. */
async function startPistats({ port = 0, args = [], env = {} } = {}) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await startOnce(port, args, env);
    } catch (err) {
      if (port === 0 || attempt >= 10) throw err;
      await sleep(300);
    }
  }
}

async function stopPistats(server, signal = 'SIGTERM') {
  if (server.proc.exitCode !== null || server.proc.signalCode !== null) return;
  server.proc.kill(signal);
  const timeout = sleep(5000).then(() => 'timeout');
  if ((await Promise.race([server.exited, timeout])) === 'timeout') {
    server.proc.kill('SIGKILL');
    await server.exited;
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function getJson(server, route, headers = {}) {
  const r = await fetch(server.url + route, { headers });
  assert.equal(r.status, 200, `GET ${route}`);
  return r.json();
}

// ------------------------------------------------------------------ the browser

let browser;

/** Launches the browser before the file's tests and closes it (and every daemon) after. */
function useBrowser() {
  before(async () => {
    assert.ok(fs.existsSync(BIN), `pistats binary not found at ${BIN} (set PISTATS_BIN)`);
    fs.mkdirSync(OUT, { recursive: true });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });
  after(async () => {
    if (browser) await browser.close();
    await Promise.all(Array.from(running, (s) => stopPistats(s, 'SIGKILL')));
  });
}

/**
 * A fresh browser context and page that records console errors, page errors, every request
 * and every WebSocket (with the documents it received).
 */
async function openPage(t, { viewport = { width: 1280, height: 900 }, colorScheme = 'light', ...more } = {}) {
  const context = await browser.newContext({ viewport, colorScheme, ...more });
  t.after(() => context.close());
  const page = await context.newPage();
  const rec = { errors: [], requests: [], responses: [], sockets: [], frames: [] };
  page.on('console', (m) => {
    if (m.type() === 'error') rec.errors.push(m.text());
  });
  page.on('pageerror', (e) => rec.errors.push(String(e)));
  page.on('request', (r) => rec.requests.push({ url: r.url(), headers: r.headers() }));
  page.on('response', (r) => rec.responses.push({
    url: r.url(), status: r.status(), type: r.headers()['content-type'], fromServiceWorker: r.fromServiceWorker(),
  }));
  page.on('websocket', (ws) => {
    rec.sockets.push(ws.url());
    ws.on('framereceived', (f) => {
      if (typeof f.payload === 'string') rec.frames.push(f.payload);
    });
  });
  return { page, rec };
}

const text = (page, sel) => page.locator(sel).first().innerText().then((s) => s.trim());

async function waitConnected(page, timeout = 15000) {
  await page.waitForSelector('#conn[data-state="connected"]', { timeout });
  // the first document has been rendered once the update time carries its timestamp
  await page.waitForSelector('#updated[datetime]', { timeout });
}

/** Waits until the page has rendered a document newer than `after` (an ISO timestamp). */
async function waitNewDocument(page, after, timeout = 10000) {
  await page.waitForFunction(
    (prev) => {
      const v = document.querySelector('#updated').getAttribute('datetime');
      return v && Date.parse(v) > Date.parse(prev);
    },
    after,
    { timeout },
  );
  return page.locator('#updated').getAttribute('datetime');
}

/**
 * Scrolls through the whole page and back, so every chart has been on screen and painted
 * (off-screen charts are not painted), e.g. before a full-page screenshot.
 */
async function scrollThrough(page) {
  await page.evaluate(async () => {
    const frame = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
    for (let y = 0; y < document.documentElement.scrollHeight; y += window.innerHeight / 2) {
      window.scrollTo(0, y);
      await frame();
    }
    window.scrollTo(0, 0);
    await frame();
  });
}

/** Every data-f binding's text, with the timestamp of the document they show. */
function readBindings(page) {
  return page.evaluate(() => ({
    timestamp: document.querySelector('#updated').getAttribute('datetime'),
    fields: Array.from(document.querySelectorAll('[data-f]'), (el) => [el.dataset.f, el.textContent.trim()]),
  }));
}

function lookup(doc, dotted) {
  return dotted.split('.').reduce((o, k) => (o == null ? undefined : o[k]), doc);
}

function parseBytes(s) {
  const m = s.match(/^([\d.]+) (B|KiB|MiB|GiB|TiB)$/);
  assert.ok(m, `not a byte size: ${s}`);
  return Number(m[1]) * 1024 ** ['B', 'KiB', 'MiB', 'GiB', 'TiB'].indexOf(m[2]);
}


module.exports = {
  REPO, ASSETS, OUT, DASH,
  startPistats, stopPistats, sleep, getJson,
  useBrowser, openPage, text, waitConnected, waitNewDocument, scrollThrough, readBindings, lookup, parseBytes,
};
