// Themes, units, home-screen install and accessibility of the dashboard, in headless Debian
// Chromium against the real pistats binary. Run with tests/browser/run.sh.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const {
  REPO, startPistats, stopPistats, getJson, useBrowser, openPage, text, waitConnected, waitNewDocument,
} = require('./harness');

useBrowser();

const PI_ARGS = (() => {
  // The Pi 4 fixture tree and the stand-in vcgencmd: a board with a CPU temperature.
  const fixtures = path.join(REPO, 'tests', 'fixtures');
  return [
    '--proc-root', path.join(fixtures, 'pi4', 'proc'),
    '--sys-root', path.join(fixtures, 'pi4', 'sys'),
    '--vcgencmd', path.join(fixtures, 'bin', 'vcgencmd'),
  ];
})();

/** Only the server that served the page was contacted, and nothing logged an error. */
function assertClean(server, rec) {
  const origin = new URL(server.url);
  for (const r of rec.requests) assert.equal(new URL(r.url).host, origin.host, `foreign request: ${r.url}`);
  assert.deepEqual(rec.errors, []);
}

/** The page's theme and the colours it actually paints with. */
function themeState(page) {
  return page.evaluate(() => {
    const root = document.documentElement;
    const cs = getComputedStyle(root);
    return {
      theme: root.dataset.theme,
      bg: getComputedStyle(document.body).backgroundColor,
      cpu: cs.getPropertyValue('--c-cpu').trim(),
      axis: cs.getPropertyValue('--c-axis').trim(),
      stored: localStorage.getItem('pistats.prefs'),
      metas: Array.from(document.querySelectorAll('meta[name="theme-color"]'), (m) => m.content),
    };
  });
}

/** How many opaque pixels of the CPU chart are (nearly) the colour `hex`. */
function chartPixels(page, hex) {
  return page.evaluate((hex) => {
    const want = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
    const c = document.querySelector('#chart-cpu');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (d[i + 3] > 240 && Math.abs(d[i] - want[0]) < 6 && Math.abs(d[i + 1] - want[1]) < 6 && Math.abs(d[i + 2] - want[2]) < 6) n++;
    }
    return n;
  }, hex);
}

/** Waits for the next chart draw (the text alternative is rewritten on every draw). */
async function nextDraw(page) {
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
}

test('theme: follows the system by default, a choice overrides it, is remembered and repaints the charts', async (t) => {
  // No event markers on the charts: their half-transparent lines can blend into any colour,
  // and a host disk over the default 90 % fill warning would draw one.
  const server = await startPistats({ args: ['--mount-fill-warning', '100'] });
  t.after(() => stopPistats(server));
  const { page, rec } = await openPage(t, { colorScheme: 'light' });
  await page.goto(server.url);
  await waitConnected(page);
  await page.waitForFunction(() => Number(document.querySelector('#chart-cpu').dataset.points) >= 2);

  const light = await themeState(page);
  assert.equal(light.theme, 'light');
  assert.equal(light.stored, null, 'nothing is stored before a choice');
  assert.equal(await page.locator('#pref-theme').inputValue(), 'system');
  // the axis labels are always drawn, whatever the load: they show which palette painted
  assert.ok(await chartPixels(page, light.axis) > 0, 'the chart is painted in the light palette');

  // the system goes dark: so does the page, without a reload
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.waitForFunction(() => document.documentElement.dataset.theme === 'dark');
  await nextDraw(page);
  const dark = await themeState(page);
  assert.notEqual(dark.bg, light.bg);
  assert.notEqual(dark.cpu, light.cpu);
  assert.ok(await chartPixels(page, dark.axis) > 0, 'the chart is repainted in the dark palette');
  assert.equal(await chartPixels(page, light.axis), 0, 'nothing of the light palette is left');

  // an explicit light choice beats the dark system, also for the browser's UI colour
  await page.locator('#prefs summary').click();
  await page.selectOption('#pref-theme', 'light');
  const chosen = await themeState(page);
  assert.equal(chosen.theme, 'light');
  assert.equal(chosen.bg, light.bg);
  assert.deepEqual(JSON.parse(chosen.stored).theme, 'light');
  assert.deepEqual(chosen.metas, [light.metas[0], light.metas[0]]);

  // remembered: a reload (still a dark system) comes back light, before and after the scripts
  await page.reload();
  await waitConnected(page);
  const again = await themeState(page);
  assert.equal(again.theme, 'light');
  assert.equal(await page.locator('#pref-theme').inputValue(), 'light');

  // back to "system": dark again
  await page.locator('#prefs summary').click();
  await page.selectOption('#pref-theme', 'system');
  assert.equal((await themeState(page)).theme, 'dark');
  assert.equal(JSON.parse((await themeState(page)).stored).theme, 'system');
  assertClean(server, rec);
});

test('units and clock: °F, bits per second and a 12-hour clock, remembered across reloads', async (t) => {
  const server = await startPistats({ args: PI_ARGS });
  t.after(() => stopPistats(server));
  const { page, rec } = await openPage(t, { locale: 'en-GB' });
  await page.goto(server.url);
  await waitConnected(page);
  await page.waitForFunction(() => Number(document.querySelector('#chart-temp').dataset.points) >= 2);
  const doc = await getJson(server, 'api/v1/stats');
  const c = doc.temperature_celsius;
  assert.equal(typeof c, 'number', 'the fixture has a CPU temperature');

  // defaults for an en-GB browser: °C, bytes, 24 h
  assert.equal(await text(page, '#temp'), `${c.toFixed(1)} °C`);
  assert.match(await text(page, '#net-recv'), /^[\d.]+ (B|KiB|MiB|GiB)\/s$/);
  assert.doesNotMatch(await text(page, '#updated'), /am|pm/i);
  assert.match(await page.locator('#chart-temp').getAttribute('aria-label'), /CPU now [\d.]+ °C, range [\d.]+ °C to [\d.]+ °C\./);

  await page.locator('#prefs summary').click();
  await page.selectOption('#pref-temp', 'f');
  await page.selectOption('#pref-rate', 'bits');
  await page.selectOption('#pref-clock', '12');
  const f = (c * 9) / 5 + 32;
  assert.equal(await text(page, '#temp'), `${f.toFixed(1)} °F`);
  assert.equal(await text(page, '#tile-temp'), `${f.toFixed(1)} °F`);
  assert.match(await text(page, '#net-recv'), /^[\d.]+ (bit|kbit|Mbit|Gbit)\/s$/);
  assert.match(await text(page, '#updated'), /am|pm/i);
  // disk rates stay in bytes
  assert.match(await text(page, '#disk-read'), /^([\d.]+ (B|KiB|MiB|GiB)\/s|—)$/);
  // the sensors table and the charts follow
  for (const cell of await page.locator('#sensors tbody td.num').allInnerTexts()) assert.match(cell.trim(), /°F$|^—$/);
  await nextDraw(page);
  assert.match(await page.locator('#chart-temp').getAttribute('aria-label'), /CPU now [\d.]+ °F, range [\d.]+ °F to [\d.]+ °F\./);
  assert.match(await page.locator('#chart-net').getAttribute('aria-label'), /Received now [\d.]+ (bit|kbit|Mbit)\/s, range /);
  assert.deepEqual(JSON.parse(await page.evaluate(() => localStorage.getItem('pistats.prefs'))),
    { theme: 'system', temp: 'f', rate: 'bits', clock: '12' });

  // remembered
  await page.reload();
  await waitConnected(page);
  const shown = await page.locator('#updated').getAttribute('datetime');
  await waitNewDocument(page, shown);
  assert.match(await text(page, '#temp'), /^[\d.]+ °F$/);
  assert.match(await text(page, '#net-recv'), /bit\/s$/);
  assert.match(await text(page, '#updated'), /am|pm/i);
  assert.deepEqual(await page.evaluate(() => ['theme', 'temp', 'rate', 'clock'].map((n) => document.querySelector(`#pref-${n}`).value)),
    ['system', 'f', 'bits', '12']);

  // a stored garbage value falls back to the default instead of breaking the page
  await page.evaluate(() => localStorage.setItem('pistats.prefs', '{"temp":"kelvin","rate":7'));
  await page.reload();
  await waitConnected(page);
  assert.match(await text(page, '#temp'), /^[\d.]+ °C$/);
  assertClean(server, rec);
});

test('home-screen install: manifest and icons are served, valid and installable', async (t) => {
  const server = await startPistats();
  t.after(() => stopPistats(server));
  const { page, rec } = await openPage(t);
  await page.goto(server.url);
  await waitConnected(page);

  const href = await page.locator('link[rel="manifest"]').getAttribute('href');
  const res = await fetch(new URL(href, server.url));
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'application/manifest+json');
  const manifest = await res.json();
  assert.equal(manifest.name, 'pistats');
  assert.equal(manifest.display, 'standalone');
  assert.ok(manifest.theme_color && manifest.background_color);

  // every icon is served with its type, and PNGs are the size they claim
  const purposes = new Set();
  for (const icon of manifest.icons) {
    const r = await fetch(new URL(icon.src, server.url));
    assert.equal(r.status, 200, icon.src);
    assert.equal(r.headers.get('content-type'), icon.type, icon.src);
    const body = Buffer.from(await r.arrayBuffer());
    if (icon.type === 'image/png') {
      assert.equal(body.toString('latin1', 1, 4), 'PNG', icon.src);
      assert.equal(`${body.readUInt32BE(16)}x${body.readUInt32BE(20)}`, icon.sizes, icon.src);
    }
    purposes.add(`${icon.purpose} ${icon.sizes}`);
  }
  assert.ok(purposes.has('maskable 512x512'), [...purposes].join(', '));
  assert.ok(purposes.has('any 192x192') && purposes.has('any 512x512'));

  const touch = await fetch(new URL(await page.locator('link[rel="apple-touch-icon"]').getAttribute('href'), server.url));
  const png = Buffer.from(await touch.arrayBuffer());
  assert.equal(touch.headers.get('content-type'), 'image/png');
  assert.equal(`${png.readUInt32BE(16)}x${png.readUInt32BE(20)}`, '180x180');
  // opaque (iOS shows transparency as black): RGB or palette colour, no transparency chunk
  assert.ok([2, 3].includes(png[25]), `PNG colour type ${png[25]}`);
  assert.equal(png.includes('tRNS'), false, 'apple-touch-icon has transparency');

  // Chromium's own manifest parser and install check agree
  const cdp = await page.context().newCDPSession(page);
  const parsed = await cdp.send('Page.getAppManifest');
  assert.deepEqual(parsed.errors, []);
  const installable = await cdp.send('Page.getInstallabilityErrors');
  // test browser contexts are incognito, where nothing installs; that is the only objection
  assert.deepEqual(installable.installabilityErrors.filter((e) => e.errorId !== 'in-incognito'), []);

  // the scripts are ES modules, served as JavaScript
  const scripts = rec.responses.filter((r) => r.url.endsWith('.js'));
  assert.ok(scripts.length >= 8, scripts.map((r) => r.url).join(' '));
  for (const r of scripts) assert.equal(r.type, 'text/javascript', r.url);
  assertClean(server, rec);
});

test('keyboard: every control is reachable with Tab, shows its focus, and works without a mouse', async (t) => {
  const server = await startPistats();
  t.after(() => stopPistats(server));
  const { page, rec } = await openPage(t, { viewport: { width: 390, height: 844 }, isMobile: false });
  await page.goto(server.url);
  await waitConnected(page);

  // Tab through the page (opening the settings when their button has focus) until focus wraps.
  const seen = [];
  for (let i = 0; i < 60; i++) {
    await page.keyboard.press('Tab');
    const f = await page.evaluate(() => {
      const el = document.activeElement;
      if (!el || el === document.body) return null;
      const cs = getComputedStyle(el);
      const outline = cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) >= 2;
      return { key: el.id || el.getAttribute('href') || el.tagName.toLowerCase(), tag: el.tagName, outline };
    });
    if (!f) break;
    if (seen.some((s) => s.key === f.key)) break;
    seen.push(f);
    if (f.tag === 'SUMMARY') await page.keyboard.press('Enter');
  }
  const keys = seen.map((s) => s.key);
  // every visible control of the page (the token form is hidden without a token)
  const controls = await page.evaluate(() => Array.from(
    document.querySelectorAll('a[href], button, select, input, summary, [tabindex]:not([tabindex="-1"])'),
    (el) => el.id || el.getAttribute('href') || el.tagName.toLowerCase(),
  ).filter((k, i, all) => all.indexOf(k) === i));
  const hidden = ['auth-token', 'button'];
  for (const k of controls.filter((c) => !hidden.includes(c))) assert.ok(keys.includes(k), `${k} not reached by Tab: ${keys.join(', ')}`);
  for (const s of seen) assert.ok(s.outline, `${s.key} has no visible focus outline`);
  assert.equal(keys[0], '#main', 'the skip link comes first');

  // the theme changes from the keyboard alone; Escape closes the settings and returns focus
  await page.focus('#pref-theme');
  await page.keyboard.press('ArrowDown');
  assert.equal(await page.locator('#pref-theme').inputValue(), 'light');
  await page.keyboard.press('ArrowDown');
  assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), 'dark');
  await page.keyboard.press('Escape');
  assert.equal(await page.locator('#prefs').getAttribute('open'), null);
  assert.equal(await page.evaluate(() => document.activeElement.tagName), 'SUMMARY');
  assertClean(server, rec);
});

test('accessibility: landmarks, headings, chart text alternatives, reduced motion', async (t) => {
  const server = await startPistats();
  t.after(() => stopPistats(server));
  const { page, rec } = await openPage(t, { reducedMotion: 'reduce' });
  await page.goto(server.url);
  await waitConnected(page);
  await page.waitForFunction(() => Number(document.querySelector('#chart-mem').dataset.points) >= 2);

  for (const role of ['banner', 'main', 'contentinfo']) assert.equal(await page.getByRole(role).count(), 1, role);
  assert.equal(await page.locator('h1').count(), 1);
  const h1 = await text(page, 'h1');
  assert.match(h1, new RegExp(`pistats\\s+${(await getJson(server, 'api/v1/stats')).system.hostname}`));
  for (const name of ['CPU', 'Memory', 'Temperature', 'Storage', 'Network', 'Disk I/O', 'Top processes', 'Interfaces']) {
    assert.ok(await page.getByRole('heading', { name, exact: true, level: 2 }).count() >= 1, name);
    assert.equal(await page.getByRole('region', { name, exact: true }).count(), 1, name);
  }

  // every chart is an image whose name says what it shows now and over its span
  await nextDraw(page);
  const labels = await page.locator('canvas').evaluateAll((els) => els.map((e) => [e.id, e.getAttribute('role'), e.getAttribute('aria-label')]));
  assert.equal(labels.length, 6);
  for (const [id, role, label] of labels) {
    assert.equal(role, 'img', id);
    if (id === 'chart-temp') continue; // this machine may have no temperature sensor
    if (id === 'chart-wifi') continue; // nor Wi-Fi (the chart is hidden then; see history.test.js)
    assert.match(label, /over the last 10 minutes.*\. \w+ now [\d.]+ ?\S+, range [\d.]+ ?\S+ to [\d.]+ ?\S+[.;]/, `${id}: ${label}`);
  }
  const mem = labels.find((l) => l[0] === 'chart-mem')[2];
  const used = await text(page, '#memory .head-val');
  // the chart describes the same document the panel shows (or the one after it)
  assert.match(mem, /RAM now [\d.]+%/);
  assert.match(used, /^[\d.]+%$/);

  // reduced motion: no transitions
  const dur = await page.evaluate(() => getComputedStyle(document.querySelector('.meter > span')).transitionDuration);
  assert.equal(dur, '0s');
  await page.emulateMedia({ reducedMotion: 'no-preference' });
  assert.notEqual(await page.evaluate(() => getComputedStyle(document.querySelector('.meter > span')).transitionDuration), '0s');
  assertClean(server, rec);
});

test('light on a phone: off-screen charts are not painted, but their text stays current', async (t) => {
  const server = await startPistats();
  t.after(() => stopPistats(server));
  const { page, rec } = await openPage(t, { viewport: { width: 390, height: 844 } });
  await page.goto(server.url);
  await waitConnected(page);
  await page.waitForFunction(() => Number(document.querySelector('#chart-disk').dataset.points) >= 3);
  const painted = () => page.evaluate(() => {
    const c = document.querySelector('#chart-disk');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return n;
  });
  // the disk chart is far below the first screen of a phone
  assert.equal(await painted(), 0);
  assert.match(await page.locator('#chart-disk').getAttribute('aria-label'), /Read now .*, range .*; Write now /);
  await page.locator('#chart-disk').scrollIntoViewIfNeeded();
  await page.waitForFunction(() => {
    const c = document.querySelector('#chart-disk');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) return true;
    return false;
  });
  assert.ok(await painted() > 100);
  assertClean(server, rec);
});

test('offline shell: with the daemon gone, a reload still opens the page, offline and retrying', async (t) => {
  const server = await startPistats();
  t.after(() => stopPistats(server));
  const { page, rec } = await openPage(t);
  await page.goto(server.url);
  await waitConnected(page);
  // 127.0.0.1 is a secure context, as HTTPS is: the worker installs and takes the page over
  await page.waitForFunction(() => navigator.serviceWorker && navigator.serviceWorker.controller !== null, null, { timeout: 10000 });
  const host = await text(page, '#host');

  await stopPistats(server, 'SIGKILL');
  const res = await page.reload();
  assert.ok(res.fromServiceWorker(), 'the page came from the offline shell');
  await page.waitForSelector('#conn[data-state="offline"]', { timeout: 10000 });
  assert.match(await text(page, '#conn-detail'), /retrying|connecting/);
  assert.equal(await text(page, '#conn-text'), 'Offline');
  // the shell is the whole page: styles and modules are there, the settings work
  assert.equal(await page.evaluate(() => getComputedStyle(document.querySelector('.card')).borderRadius), '14px');
  await page.locator('#prefs summary').click();
  await page.selectOption('#pref-theme', 'dark');
  assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), 'dark');
  assert.notEqual(host, '');
  // nothing but the Pi was asked, even while it was gone
  const origin = new URL(server.url);
  for (const r of rec.requests) assert.equal(new URL(r.url).host, origin.host, r.url);
  // the page's files came from the shell's copy; the API never does
  assert.ok(rec.responses.some((r) => r.fromServiceWorker && r.url.endsWith('/charts.js')));
  const api = rec.responses.filter((r) => r.url.includes('/api/'));
  assert.ok(api.length >= 1);
  assert.ok(api.every((r) => !r.fromServiceWorker), JSON.stringify(api));
});
