// How long the dashboard takes to switch chart ranges with a year of history loaded, on a
// mid-range phone's CPU (Chromium CPU throttling 4×): from the click to the end of the frame
// that draws the new range's charts. A benchmark that reports figures, not a test: nothing here
// fails on a slow run. Run through range-switch-bench.sh, which prepares the daemon and its
// year of history:
//
//   node range-switch.bench.js ROUNDS NAME=URL [NAME=URL…]
//
// With more than one page (say the dashboard before and after a change, each served by its
// own daemon on the same history), the rounds alternate between them, in a different order
// each round, so that both are measured under the same load.
'use strict';

const { chromium } = require('playwright-core');

const rounds = Number(process.argv[2] || 5);
const targets = process.argv.slice(3).map((a) => {
  const i = a.indexOf('=');
  return { name: a.slice(0, i), url: a.slice(i + 1) };
});
const RANGES = ['10m', '1h', '24h', '7d', '30d', '1y'];
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

// Installed before the page's modules run: stamps every click (capture phase, so before the
// page's own handler) and every animation-frame callback, and marks the first frame that
// draws the chosen range's points.
function instrument() {
  const bench = (window.__bench = { clickAt: 0, doneAt: 0, drawMs: 0, parseMs: 0, want: null, hist: null });
  document.addEventListener('click', () => {
    bench.clickAt = performance.now();
    bench.doneAt = 0;
    bench.parseMs = 0;
  }, true);
  const json = Response.prototype.json;
  Response.prototype.json = async function () {
    const t0 = performance.now();
    const v = await json.call(this);
    if (this.url.includes('api/v1/history?range=')) bench.parseMs += performance.now() - t0;
    return v;
  };
  const raf = window.requestAnimationFrame.bind(window);
  window.requestAnimationFrame = (cb) => raf((ts) => {
    const t0 = performance.now();
    cb(ts);
    const h = bench.hist;
    if (!bench.doneAt && bench.want && h && h.range === bench.want
        && (bench.want === '10m' || h.chartPoints().length > 0)) {
      bench.doneAt = performance.now();
      bench.drawMs = bench.doneAt - t0;
    }
  });
}

const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)];
};

(async () => {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--headless', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
  try {
    const context = await browser.newContext({
      viewport: { width: 412, height: 823 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
    });
    await context.addInitScript(instrument);
    const page = await context.newPage();
    const cdp = await context.newCDPSession(page);
    const load = async (url) => {
      await cdp.send('Emulation.setCPUThrottlingRate', { rate: 1 });
      await page.goto(url, { waitUntil: 'load' });
      await page.evaluate(async () => { window.__bench.hist = await import('./history.js'); });
      await page.waitForFunction(() => window.__bench.hist.points.length > 0, null, { timeout: 30000 });
      await cdp.send('Emulation.setCPUThrottlingRate', { rate: 4 });
    };
    const sw = async (r) => {
      await page.evaluate((want) => { window.__bench.want = want; performance.clearResourceTimings(); }, r);
      await page.click(`#range-${r}`);
      await page.waitForFunction(() => window.__bench.doneAt > 0, null, { timeout: 60000, polling: 50 });
      const m = await page.evaluate(() => {
        const b = window.__bench;
        const res = performance.getEntriesByType('resource').filter((e) => e.name.includes('api/v1/history?range='));
        const last = res[res.length - 1];
        return {
          ms: b.doneAt - b.clickAt, fetch: last ? last.duration : 0, parse: b.parseMs, draw: b.drawMs,
          points: b.hist.chartPoints().length, bytes: last ? last.decodedBodySize : 0,
        };
      });
      await page.waitForTimeout(300);
      return m;
    };

    // Each round opens each page afresh, switches 10m → 1h → … → 1y (each range fetched for
    // the first time on that page), then the same again (each range's reply kept and fresh).
    // Round 0 warms the daemons and the browser's caches up and is not counted.
    const blank = () => Object.fromEntries(RANGES.map((r) => [r, []]));
    for (const t of targets) Object.assign(t, { first: blank(), again: blank() });
    for (let round = 0; round <= rounds; round++) {
      const order = round % 2 ? [...targets].reverse() : targets;
      for (const t of order) {
        await load(t.url);
        for (const pass of [t.first, t.again]) {
          for (const r of RANGES) {
            const m = await sw(r);
            if (round > 0) pass[r].push(m);
          }
        }
      }
    }

    const f = (v) => v.toFixed(1).padStart(7);
    for (const t of targets) {
      console.log(`\n== ${t.name} (${t.url}): click to charts drawn, CPU throttled 4×, 412×823 mobile viewport, ${rounds} rounds (ms)`);
      for (const [name, pass] of [['first switch to the range on the page', t.first], ['switching back (kept reply)', t.again]]) {
        console.log(`\n${name}:`);
        console.log('range  points    KB  median     p95     max  | medians: fetch  JSON.parse  draw frame  page (total − fetch)');
        for (const r of RANGES) {
          const ms = pass[r];
          const xs = ms.map((m) => m.ms);
          const med = (k) => f(quantile(ms.map((m) => m[k]), 0.5));
          const kb = r === '10m' ? '-' : (quantile(t.first[r].map((m) => m.bytes), 0.5) / 1000).toFixed(0);
          console.log(`${r.padEnd(5)} ${String(quantile(ms.map((m) => m.points), 0.5)).padStart(7)} ${kb.padStart(5)} ${f(quantile(xs, 0.5))} ${f(quantile(xs, 0.95))} ${f(Math.max(...xs))}  | ${med('fetch')} ${med('parse')}    ${med('draw')}     ${f(quantile(ms.map((m) => m.ms - m.fetch), 0.5))}`);
        }
      }
    }
  } finally {
    await browser.close();
  }
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
