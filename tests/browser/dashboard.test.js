// The dashboard in headless Debian Chromium against the real pistats binary.
//
// Run with tests/browser/run.sh (installs Chromium and playwright-core, builds pistats when
// needed). PISTATS_BIN picks the binary; CHROMIUM the browser. Screenshots land in
// tests/browser/out/; with PISTATS_UPDATE_DOCS=1 they are also copied to docs/.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const {
  REPO, OUT, DASH, startPistats, stopPistats, sleep, getJson,
  useBrowser, openPage, text, waitConnected, waitNewDocument, scrollThrough, readBindings, lookup, parseBytes,
} = require('./harness');

useBrowser();

// pistats on the fixture tree of `board` (tests/fixtures/<board>, copied from that board's
// /proc and /sys) with the stand-in `vcgencmd` script (a Pi's firmware cannot run here), and
// the dashboard connected to it in a desktop-sized page.
async function openBoard(t, board, vcgencmd, extraArgs = []) {
  const fixtures = path.join(REPO, 'tests', 'fixtures');
  const server = await startPistats({
    args: [
      ...extraArgs,
      '--proc-root', path.join(fixtures, board, 'proc'),
      '--sys-root', path.join(fixtures, board, 'sys'),
      '--vcgencmd', path.join(fixtures, 'bin', vcgencmd),
    ],
  });
  t.after(() => stopPistats(server));
  const { page, rec } = await openPage(t, { viewport: { width: 1440, height: 900 } });
  await page.goto(server.url);
  await waitConnected(page);
  return { server, page, rec };
}

// ------------------------------------------------------------------ tests

test('shows live values of the real daemon, with no errors and no foreign requests', async (t) => {
  const server = await startPistats();
  t.after(() => stopPistats(server));
  const { page, rec } = await openPage(t);
  await page.goto(server.url);
  await waitConnected(page);

  const doc = await getJson(server, 'api/v1/stats');
  assert.equal(await text(page, '#host'), doc.system.hostname);
  assert.equal(doc.system.hostname, os.hostname());
  assert.equal(await page.title(), `${os.hostname()} · pistats`);

  // one per-core meter per CPU, as many as the machine has
  const cpus = os.cpus().length;
  await page.waitForFunction((n) => document.querySelectorAll('#cores [data-core]').length === n, cpus);
  assert.equal(await text(page, '#cpu-count'), String(cpus));
  assert.equal(doc.cpu.per_core_usage.length, cpus);
  for (const v of await page.locator('#cores [data-core] .val').allInnerTexts()) {
    assert.match(v, /^\d{1,3}\.\d%$/);
  }
  assert.match(await text(page, '#cpu-usage'), /^\d{1,3}\.\d%$/);

  // memory total as shown matches the kernel's figure
  const memTotal = parseBytes(await text(page, '#memory [data-f="memory.total_gb"]'));
  assert.ok(Math.abs(memTotal - os.totalmem()) / os.totalmem() < 0.02, `memory total ${memTotal} vs ${os.totalmem()}`);

  // lists mirror the document: partitions, interfaces, processes, sensors
  const mounts = await page.locator('#partitions [data-mount]').evaluateAll((els) => els.map((e) => e.dataset.mount.split('\u0000')[0]));
  assert.deepEqual(mounts.sort(), doc.disk.partitions.map((p) => p.mountpoint).sort());
  const ifaces = await page.locator('#ifaces [data-iface]').evaluateAll((els) => els.map((e) => e.dataset.iface));
  assert.deepEqual(ifaces.sort(), Object.keys(doc.network.interfaces).sort());
  assert.ok(ifaces.includes('lo'));
  assert.match(await text(page, '[data-iface="lo"]'), /127\.0\.0\.1\/8/);
  assert.ok(doc.processes.top_cpu_usage.length > 0);
  assert.equal(await page.locator('#procs tbody tr').count(), doc.processes.top_cpu_usage.length);
  const sensorCount = Object.values(doc.temperature.sensors).reduce((n, r) => n + r.length, 0);
  assert.equal(await page.locator('#sensors tbody tr').count(), sensorCount);
  assert.equal(await page.locator('#sensors-empty').isVisible(), sensorCount === 0);
  assert.notEqual(await text(page, '#clients'), DASH);

  // values move: new documents arrive and rates get filled in after the first tick
  const first = await page.locator('#updated').getAttribute('datetime');
  const second = await waitNewDocument(page, first);
  await waitNewDocument(page, second);
  assert.match(await text(page, '#net-recv'), /^[\d.]+ (B|KiB|MiB|GiB)\/s$/);
  assert.match(await text(page, '#disk-read'), /^([\d.]+ (B|KiB|MiB|GiB)\/s|—)$/);

  // the charts got history on connect and are being drawn
  const history = rec.requests.filter((r) => r.url.includes('/api/v1/history?seconds=600'));
  assert.equal(history.length, 1);
  await page.waitForFunction(() => Number(document.querySelector('#chart-cpu').dataset.points) >= 3);

  const body = await page.locator('body').innerText();
  assert.doesNotMatch(body, /undefined|NaN|\[object/);
  // the tab icon follows the alert banner (none on a machine without Pi firmware flags)
  const alerting = await page.locator('#alert').isVisible();
  assert.equal(await page.locator('link[rel="icon"]').getAttribute('href'), alerting ? 'favicon-alert.svg' : 'favicon.svg');

  // only the server that served the page was ever contacted
  const origin = new URL(server.url);
  for (const r of rec.requests) assert.equal(new URL(r.url).host, origin.host, r.url);
  assert.deepEqual(rec.sockets, [`ws://${origin.host}/ws`]);
  assert.deepEqual(rec.errors, []);
});

test('charts are full at once: history is loaded on connect', async (t) => {
  const server = await startPistats();
  t.after(() => stopPistats(server));
  await sleep(3000); // let the daemon record a few ticks
  const { page } = await openPage(t);
  const historyReply = page.waitForResponse((r) => r.url().includes('/api/v1/history'));
  await page.goto(server.url);
  const reply = await historyReply;
  assert.equal(reply.status(), 200);
  const { points } = await reply.json();
  assert.ok(points.length >= 4, `history has ${points.length} points`);
  // drawn from history, not only from the live documents that came after the page opened
  await page.waitForFunction((n) => Number(document.querySelector('#chart-cpu').dataset.points) >= n, points.length);
  for (const id of ['chart-cpu', 'chart-mem', 'chart-net', 'chart-disk', 'chart-temp']) {
    assert.equal(Number(await page.locator(`#${id}`).getAttribute('data-since')), points[0].t, id);
  }
  // and something was actually painted in the plot
  const painted = await page.evaluate(() => {
    const c = document.querySelector('#chart-cpu');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return n / (c.width * c.height);
  });
  assert.ok(painted > 0.01, `only ${painted} of the chart is painted`);
});

test('missing values render as a dash (battery, Pi health, connectivity when absent)', async (t) => {
  const server = await startPistats();
  t.after(() => stopPistats(server));
  const { page, rec } = await openPage(t);
  await page.goto(server.url);
  await waitConnected(page);
  const first = await page.locator('#updated').getAttribute('datetime');
  await waitNewDocument(page, first);

  // compare with the very document the page rendered, as received on its WebSocket
  const shown = await readBindings(page);
  const doc = rec.frames.map((f) => JSON.parse(f)).find((d) => d.timestamp === shown.timestamp);
  assert.ok(doc, `document ${shown.timestamp} was not received on the socket`);
  let nulls = 0;
  for (const [field, value] of shown.fields) {
    const v = lookup(doc, field);
    if (v === null || v === undefined) {
      nulls++;
      assert.equal(value, DASH, `${field} is ${v} but shows "${value}"`);
    }
    assert.doesNotMatch(value, /undefined|NaN|null/, field);
  }

  if (doc.battery === null) {
    for (const sel of ['#battery-percent', '#battery-plugged', '#battery-left']) assert.equal(await text(page, sel), DASH, sel);
    assert.ok(nulls >= 3);
  } else {
    assert.match(await text(page, '#battery-percent'), /^\d{1,3}\.\d%$/);
  }
  if (doc.pi === null) {
    assert.equal(await page.locator('#pi').isHidden(), true);
    assert.equal(await text(page, '#pi-power'), DASH);
    assert.equal(await page.locator('#alert').isHidden(), true);
  }
  if (doc.connectivity === null) {
    assert.equal(await text(page, '#connectivity-iface'), DASH);
    assert.equal(await text(page, '#conn-badge'), DASH);
  } else {
    assert.equal(await text(page, '#connectivity-iface'), doc.connectivity.interface);
    assert.equal(await text(page, '#connectivity-state'), doc.connectivity.state);
  }
  if (doc.temperature_celsius === null && doc.temperature.pi_cpu_celsius === null) {
    assert.equal(await text(page, '#temp'), DASH);
  }
});

test('the feed is compressed (permessage-deflate) and the dashboard renders it', async (t) => {
  const server = await startPistats();
  t.after(() => stopPistats(server));
  const { page, rec } = await openPage(t);
  // The handshake as the browser's network stack saw it (Chromium offers the extension itself).
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  const handshakes = [];
  cdp.on('Network.webSocketWillSendHandshakeRequest', (e) => handshakes.push({ request: e.request.headers }));
  cdp.on('Network.webSocketHandshakeResponseReceived', (e) => handshakes.push({ status: e.response.status, response: e.response.headers }));
  await page.goto(server.url);
  await waitConnected(page);
  const first = await page.locator('#updated').getAttribute('datetime');
  await waitNewDocument(page, first);

  const header = (headers, name) => Object.entries(headers).find(([k]) => k.toLowerCase() === name)?.[1];
  const request = handshakes.find((h) => h.request);
  const response = handshakes.find((h) => h.response);
  assert.match(header(request.request, 'sec-websocket-extensions'), /permessage-deflate/);
  assert.equal(response.status, 101);
  assert.equal(
    header(response.response, 'sec-websocket-extensions'),
    'permessage-deflate; server_no_context_takeover; client_no_context_takeover',
  );
  // The frames the page received inflate to whole documents, and the page shows the latest.
  assert.ok(rec.frames.length >= 2, `frames: ${rec.frames.length}`);
  const docs = rec.frames.map((f) => JSON.parse(f));
  for (const doc of docs) assert.equal(typeof doc.cpu.usage_percent, 'number');
  assert.equal(await text(page, '#host'), docs.at(-1).system.hostname);
  assert.deepEqual(rec.errors, []);
});

test('reconnects after the daemon is restarted on the same port', async (t) => {
  let server = await startPistats();
  t.after(() => stopPistats(server));
  const { page, rec } = await openPage(t);
  await page.goto(server.url);
  await waitConnected(page);
  const hostShown = await text(page, '#host');

  await stopPistats(server, 'SIGKILL');
  await page.waitForSelector('#conn[data-state="offline"]', { timeout: 10000 });
  const lastSeen = await page.locator('#updated').getAttribute('datetime');
  assert.match(await text(page, '#conn-detail'), /retrying/);
  // the last values stay on screen while offline
  assert.equal(await text(page, '#host'), hostShown);

  await sleep(1500); // a few failed attempts: the backoff grows
  server = await startPistats({ port: server.port });
  await waitConnected(page, 20000);
  await waitNewDocument(page, lastSeen, 10000);
  const after = await page.locator('#updated').getAttribute('datetime');
  await waitNewDocument(page, after);
  assert.ok(rec.sockets.length >= 2, `sockets opened: ${rec.sockets.length}`);
  assert.equal(await text(page, '#conn-text'), 'Live');
  // the new daemon counts this page as its one client
  await page.waitForFunction(() => document.querySelector('#clients').textContent === '1');
});

test('asks for the access token and uses it for the socket and the API', async (t) => {
  const token = 'tok-' + Math.random().toString(36).slice(2);
  const server = await startPistats({ args: ['--token', token] });
  t.after(() => stopPistats(server));
  const unauth = await fetch(server.url + 'api/v1/stats');
  assert.equal(unauth.status, 401);

  const { page, rec } = await openPage(t);
  await page.goto(server.url);
  await page.waitForSelector('#auth:not([hidden])', { timeout: 10000 });
  assert.equal(await page.locator('#conn').getAttribute('data-state'), 'auth');
  assert.equal(await text(page, '#system [data-f="system.hostname"]'), DASH);
  assert.equal(await page.evaluate(() => document.activeElement.id), 'auth-token');

  // a wrong token is refused and asked for again
  await page.fill('#auth-token', 'wrong-token');
  await page.press('#auth-token', 'Enter');
  await page.waitForFunction(() => /not accepted/.test(document.querySelector('#auth-msg').textContent)
    && !document.querySelector('#auth').hidden, null, { timeout: 10000 });

  await page.getByLabel('Access token').fill(token);
  await page.getByRole('button', { name: 'Connect' }).click();
  await waitConnected(page);
  assert.equal(await page.locator('#auth').isHidden(), true);
  assert.equal(await text(page, '#host'), os.hostname());
  assert.equal(await page.evaluate(() => localStorage.getItem('pistats.token')), token);
  assert.ok(rec.sockets.includes(`ws://${server.addr}/ws?token=${token}`), rec.sockets.join(' '));
  await page.waitForFunction(() => Number(document.querySelector('#chart-cpu').dataset.points) >= 1);
  const history = rec.requests.filter((r) => r.url.includes('/api/v1/history'));
  assert.ok(history.length >= 1);
  assert.equal(history[history.length - 1].headers.authorization, `Bearer ${token}`);

  // the stored token is used straight away next time
  rec.sockets.length = 0;
  await page.reload();
  await waitConnected(page);
  assert.equal(await page.locator('#auth').isHidden(), true);
  assert.deepEqual(rec.sockets, [`ws://${server.addr}/ws?token=${token}`]);
});

test('Raspberry Pi health: throttling and under-voltage flags from the firmware', async (t) => {
  // The Pi 4 fixture tree and the stand-in vcgencmd (a Pi's firmware cannot run here) report
  // an under-voltage, throttled board.
  const { server, page, rec } = await openBoard(t, 'pi4', 'vcgencmd');
  await page.waitForSelector('#pi:not([hidden])', { timeout: 10000 });
  const doc = await getJson(server, 'api/v1/stats');
  assert.ok(doc.pi && doc.pi.throttled, 'the fixture makes a Pi');

  assert.equal(await text(page, '#subtitle'), doc.system.model);
  const alert = page.getByRole('alert');
  assert.match(await alert.innerText(), /Under-voltage detected/);
  // the tab icon shows the alert too
  assert.equal(await page.locator('link[rel="icon"]').getAttribute('href'), 'favicon-alert.svg');
  assert.match(await text(page, '#pi-power'), /^Now: .*under-voltage/);
  assert.equal(await page.locator('#pi-power').getAttribute('data-level'), 'crit');
  const flags = {};
  for (const row of await page.locator('#pi-flags tbody tr').all()) {
    const key = await row.getAttribute('data-flag');
    flags[key] = (await row.locator('td').allInnerTexts()).slice(1).map((s) => s.trim());
  }
  const yes = (b) => (b ? 'Yes' : 'No');
  const th = doc.pi.throttled;
  assert.deepEqual(flags, {
    under_voltage: [yes(th.under_voltage), yes(th.under_voltage_occurred)],
    arm_frequency_capped: [yes(th.arm_frequency_capped), yes(th.arm_frequency_capping_occurred)],
    throttled: [yes(th.throttled), yes(th.throttling_occurred)],
    soft_temperature_limit: [yes(th.soft_temperature_limit), yes(th.soft_temperature_limit_occurred)],
  });
  assert.deepEqual(flags.under_voltage, ['Yes', 'Yes']);
  assert.equal(await text(page, '#pi [data-f="pi.throttled_raw"]'), doc.pi.throttled_raw);
  assert.equal(await text(page, '#pi [data-f="pi.revision"]'), doc.pi.revision);
  assert.equal(await text(page, '#pi [data-f="pi.core_volts"]'), `${doc.pi.core_volts.toFixed(3)} V`);

  // temperature with its colour level and a word for it
  const c = doc.temperature_celsius;
  assert.equal(typeof c, 'number');
  assert.equal(await text(page, '#temp'), `${c.toFixed(1)} °C`);
  const level = c >= 80 ? 'crit' : c >= 70 ? 'hot' : c >= 60 ? 'warm' : 'ok';
  assert.equal(await page.locator('#temp').getAttribute('data-level'), level);
  assert.equal(await page.locator('#tile-temp').getAttribute('data-level'), level);
  assert.notEqual(await text(page, '#temp-level'), DASH);
  await page.waitForFunction(() => Number(document.querySelector('#chart-temp').dataset.points) >= 2);
  await sleep(600);
  await scrollThrough(page);
  await page.screenshot({ path: path.join(OUT, 'dashboard-pi-full.png'), fullPage: true });
  assert.deepEqual(rec.errors, []);
});

test('a banner lists the firing alert rules', async (t) => {
  // The Pi 4 fixture tree reports under-voltage now: the rule fires on the first tick.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pistats-alerts-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const config = path.join(dir, 'config.toml');
  fs.writeFileSync(config, [
    '[[alert]]', 'name = "power"', 'metric = "undervoltage"', 'severity = "critical"',
    '[[alert]]', 'name = "load"', 'metric = "load1"', 'above = 1024',
  ].join('\n') + '\n');
  const { server, page, rec } = await openBoard(t, 'pi4', 'vcgencmd', ['--config', config]);
  await page.waitForSelector('#alerts-banner:not([hidden])', { timeout: 15000 });
  const alerts = await getJson(server, 'api/v1/alerts');
  assert.deepEqual(alerts.alerts.map((a) => [a.name, a.state]), [['power', 'firing'], ['load', 'ok']]);
  // only the firing rule is listed
  assert.equal(await text(page, '#alerts-banner'), 'Alert: power');
  assert.deepEqual(rec.errors, []);
});

test('the alerts panel lists every rule with its state, value, condition and since when', async (t) => {
  // On the Pi 4 fixture tree under-voltage is reported now (fires); load stays under its line;
  // the tree has no Wi-Fi link, so the signal rule's value is unknown.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pistats-alerts-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const config = path.join(dir, 'config.toml');
  fs.writeFileSync(config, [
    '[[alert]]', 'name = "power"', 'metric = "undervoltage"', 'severity = "critical"',
    '[[alert]]', 'name = "load"', 'metric = "load1"', 'above = 1024', 'clear = 512', 'for = "1m"',
    '[[alert]]', 'name = "weak-wifi"', 'metric = "wifi_signal"', 'below = -75',
  ].join('\n') + '\n');
  const { server, page, rec } = await openBoard(t, 'pi4', 'vcgencmd', ['--config', config]);
  await page.waitForFunction(() => {
    const b = document.querySelector('#alert-rules tr[data-rule="power"] .badge');
    return b && b.textContent === 'firing';
  }, null, { timeout: 15000 });
  const api = await getJson(server, 'api/v1/alerts');
  const rows = await page.$$eval('#alert-rules tbody tr', (trs) => trs.map((tr) => ({
    header: tr.firstElementChild.tagName + ':' + tr.firstElementChild.getAttribute('scope'),
    cells: Array.from(tr.children, (c) => c.textContent),
    level: tr.querySelector('.badge').dataset.level,
    datetime: tr.querySelector('time').getAttribute('datetime'),
  })));
  // every rule, in the configuration's order, each named by a row header
  assert.deepEqual(rows.map((r) => r.cells[0]), ['power', 'load', 'weak-wifi']);
  assert.ok(rows.every((r) => r.header === 'TH:row'), JSON.stringify(rows));
  const [power, load, wifi] = rows;
  assert.deepEqual([power.cells[1], power.level, power.cells[2], power.cells[3]], ['firing', 'crit', 'set', 'while set']);
  // since: the time the API gives (the same on every tick while the state holds), as a
  // machine-readable <time> and words
  assert.equal(Date.parse(power.datetime), Date.parse(api.alerts[0].since),
    `${power.datetime} vs ${api.alerts[0].since}`);
  assert.notEqual(power.cells[4], DASH);
  assert.deepEqual([load.cells[1], load.level, load.cells[3], load.cells[4], load.datetime],
    ['ok', 'ok', 'above 1024.00, clears at 512.00 for 1 min', DASH, null]);
  assert.equal(load.cells[2], api.alerts[1].value.toFixed(2));
  assert.deepEqual([wifi.cells[1], wifi.cells[2], wifi.cells[3]], ['ok', DASH, 'below -75 dBm']);
  assert.equal(await text(page, '#alerts-summary'), '1 firing');
  // the table is announced with its caption; nothing in it takes focus (it has no controls)
  assert.match(await text(page, '#alert-rules caption'), /Alert rules/);
  assert.equal(await page.$$eval('#alert-rules [tabindex], #alert-rules a, #alert-rules button', (e) => e.length), 0);
  await page.locator('#alerts').screenshot({ path: path.join(OUT, 'dashboard-alerts-panel.png') });
  assert.deepEqual(rec.errors, []);
});

test('responsive layout: screenshots at phone and desktop sizes, light and dark', async (t) => {
  const server = await startPistats();
  t.after(() => stopPistats(server));
  await sleep(2000); // some history for the charts
  const shots = [
    ['dashboard-phone', { width: 390, height: 844 }, 'light'],
    ['dashboard-desktop', { width: 1440, height: 900 }, 'light'],
    ['dashboard-phone-dark', { width: 390, height: 844 }, 'dark'],
    ['dashboard-desktop-dark', { width: 1440, height: 900 }, 'dark'],
    ['dashboard-narrow', { width: 360, height: 740 }, 'light'],
  ];
  for (const [name, viewport, colorScheme] of shots) {
    const { page, rec } = await openPage(t, { viewport, colorScheme });
    await page.goto(server.url);
    await waitConnected(page);
    await page.waitForFunction(() => Number(document.querySelector('#chart-net').dataset.points) >= 3);
    // nothing sticks out sideways at this width
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `${name}: page is ${overflow}px wider than the viewport`);
    // the summary tiles are all on screen
    for (const box of await page.locator('.tile').evaluateAll((els) => els.map((e) => e.getBoundingClientRect().right))) {
      assert.ok(box <= viewport.width, `${name}: a tile ends at ${box}px`);
    }
    await sleep(600); // let the meters' transitions settle
    await page.screenshot({ path: path.join(OUT, `${name}.png`) });
    await scrollThrough(page);
    await page.screenshot({ path: path.join(OUT, `${name}-full.png`), fullPage: true });
    assert.deepEqual(rec.errors, [], name);
  }
  if (process.env.PISTATS_UPDATE_DOCS === '1') {
    fs.mkdirSync(path.join(REPO, 'docs'), { recursive: true });
    // the phone's first screen, the whole desktop page; light and dark
    for (const dark of ['', '-dark']) {
      fs.copyFileSync(path.join(OUT, `dashboard-phone${dark}.png`), path.join(REPO, 'docs', `dashboard-phone${dark}.png`));
      fs.copyFileSync(path.join(OUT, `dashboard-desktop${dark}-full.png`), path.join(REPO, 'docs', `dashboard-desktop${dark}.png`));
    }
  }
});

test('Pi Zero W: under-voltage is "not available", never "OK"', async (t) => {
  // The Pi Zero W fixture tree: the board has no under-voltage detector.
  const { server, page } = await openBoard(t, 'pizerow', 'vcgencmd-missing');
  await page.waitForSelector('#pi:not([hidden])', { timeout: 10000 });
  const doc = await getJson(server, 'api/v1/stats');
  assert.equal(doc.pi.throttled.under_voltage, null);
  assert.equal(doc.pi.undervoltage_detection, false);
  const row = page.locator('#pi-flags tbody tr[data-flag="under_voltage"] td');
  const cells = (await row.allInnerTexts()).slice(1).map((s) => s.trim());
  assert.deepEqual(cells, ['not available', 'not available']);
  const throttled = page.locator('#pi-flags tbody tr[data-flag="throttled"] td');
  assert.deepEqual((await throttled.allInnerTexts()).slice(1).map((s) => s.trim()), ['No', 'No']);
  assert.match(await text(page, '#pi-power'), /under-voltage: not available/);
});

test('Pi 5: the fan and the disks with their card', async (t) => {
  // The Pi 5 fixture tree: pwm-fan with tachometer, an SD card (no wear report) and an NVMe SSD.
  const { server, page } = await openBoard(t, 'pi5', 'vcgencmd-pi5');
  await page.waitForSelector('#fans tbody tr', { timeout: 10000 });
  const rows = async (sel) => Promise.all((await page.locator(`${sel} tbody tr`).all())
    .map(async (r) => (await r.locator('td').allInnerTexts()).map((s) => s.trim())));
  const fans = await rows('#fans');
  assert.equal(fans.length, 1);
  assert.equal(fans[0][0], 'pwmfan · fan1');
  assert.match(fans[0][1], /^2[,.\u202f\u00a0]?946 rpm$/);
  assert.equal(fans[0][2], '1 of 4');
  const disks = Object.fromEntries((await rows('#disks')).map((r) => [r[0], r.slice(1)]));
  assert.deepEqual(Object.keys(disks), ['mmcblk0', 'nvme0n1']);
  assert.equal(disks.mmcblk0[1], 'SD · SR64G · 08/2023');
  assert.equal(disks.mmcblk0[2], 'not reported by this card');
  assert.equal(disks.nvme0n1[1], '—');
  assert.notEqual(disks.nvme0n1[0], '—');
  assert.equal(await page.locator('#fans-empty').isHidden(), true);
  // The fixture's counters stand still: once the history has seen the disks, nothing was
  // written today and no day has closed yet.
  await page.waitForFunction(() => /^written today/.test(
    document.querySelector('#disks tbody tr td:nth-child(5)')?.textContent || ''), null, { timeout: 10000 });
  const written = Object.fromEntries((await rows('#disks')).map((r) => [r[0], r[4]]));
  assert.deepEqual(written, { mmcblk0: 'written today 0 B', nvme0n1: 'written today 0 B' });
  const doc = await getJson(server, 'api/v1/stats');
  assert.equal(doc.disk.devices.mmcblk0.written_today_bytes, 0);
  assert.deepEqual(doc.disk.devices.mmcblk0.written_per_day, []);
});

test('storage card: bytes written today and the mean of the closed days', async (t) => {
  // A copy of the Pi 5 tree whose SD card writes 2000 sectors (1000 KiB) on one local day.
  // TZ moves from UTC-12 to UTC+14 across a restart: a later local date, so that day closes.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pistats-days-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  require('node:child_process').execFileSync('cp', ['-a', path.join(REPO, 'tests', 'fixtures', 'pi5'), dir]);
  const tree = path.join(dir, 'pi5');
  const diskstats = path.join(tree, 'proc', 'diskstats');
  const recorded = fs.readFileSync(diskstats, 'utf8');
  const setSectors = (n) => {
    const text = recorded.replace(/^( 179 +0 mmcblk0 1523 0 98214 1211 3 0) 24 /m, `$1 ${n} `);
    assert.notEqual(text, recorded);
    fs.writeFileSync(diskstats, text);
  };
  const args = [
    '--proc-root', path.join(tree, 'proc'),
    '--sys-root', path.join(tree, 'sys'),
    '--vcgencmd', path.join(REPO, 'tests', 'fixtures', 'bin', 'vcgencmd-pi5'),
    '--state-dir', path.join(dir, 'state'),
  ];
  const sd = async (server) => (await getJson(server, 'api/v1/stats')).disk.devices.mmcblk0;
  const total = (dev) => dev.written_today_bytes + dev.written_per_day.reduce((s, d) => s + d.bytes, 0);
  const until = async (server, check) => {
    for (let i = 0; i < 100; i++) {
      const dev = await sd(server);
      if (typeof dev.written_today_bytes === 'number' && check(dev)) return dev;
      await sleep(100);
    }
    assert.fail(`never reached: ${JSON.stringify(await sd(server))}`);
  };
  const first = await startPistats({ args, env: { TZ: 'UTC+12' } });
  t.after(() => stopPistats(first));
  await until(first, (dev) => total(dev) === 0);
  setSectors(2024);
  const crossed = (await until(first, (dev) => total(dev) === 2000 * 512)).written_per_day.length > 0;
  await stopPistats(first);

  const second = await startPistats({ args, env: { TZ: 'UTC-14' } });
  t.after(() => stopPistats(second));
  const { page, rec } = await openPage(t, { viewport: { width: 1440, height: 900 } });
  await page.goto(second.url);
  await waitConnected(page);
  const cell = () => page.evaluate(() => [...document.querySelectorAll('#disks tbody tr')]
    .find((r) => r.cells[0].textContent === 'mmcblk0')?.cells[4].textContent || '');
  await page.waitForFunction(() => [...document.querySelectorAll('#disks tbody tr')]
    .some((r) => r.cells[0].textContent === 'mmcblk0' && /day mean/.test(r.cells[4].textContent)), null, { timeout: 10000 });
  if (!crossed) {
    assert.equal(await cell(), 'written today 0 B · 1000 KiB/day (1-day mean)');
  } else {
    // The first run itself crossed midnight: two closed days share the 1000 KiB.
    assert.match(await cell(), /^written today 0 B · .+\/day \(\d-day mean\)$/);
  }
  assert.deepEqual(rec.errors, []);
});
