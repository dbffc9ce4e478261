// Long-term history and events in the dashboard: the range selector fetches the chosen tier
// for every chart, and the events panel lists what the daemon recorded, newest first.
//
// The daemon reads a copy of the Pi 4 fixture tree (tests/fixtures/pi4, from a Raspberry Pi 4
// Model B) so the test can flip the firmware's under-voltage flag, as the kernel would.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { REPO, startPistats, stopPistats, useBrowser, openPage, waitConnected } = require('./harness');

useBrowser();

function piTree(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pistats-pi4-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.cpSync(path.join(REPO, 'tests/fixtures/pi4'), dir, { recursive: true, verbatimSymlinks: true });
  const throttled = path.join(dir, 'sys/devices/platform/soc/soc:firmware/get_throttled');
  fs.writeFileSync(throttled, '0\n');
  return { dir, setThrottled: (bits) => fs.writeFileSync(throttled, bits.toString(16) + '\n') };
}

// pistats on the tree, watching loopback, and the dashboard connected to it.
async function openOnTree(t, pi) {
  const server = await startPistats({
    args: ['--proc-root', path.join(pi.dir, 'proc'), '--sys-root', path.join(pi.dir, 'sys'), '--interface', 'lo'],
  });
  t.after(() => stopPistats(server));
  const { page, rec } = await openPage(t);
  await page.goto(server.url);
  await waitConnected(page);
  return { server, page, rec };
}

test('range selector and events panel', async (t) => {
  const pi = piTree(t);
  const { page, rec } = await openOnTree(t, pi);

  // The events panel lists the start, then an under-voltage as it happens (newest first).
  await page.waitForSelector('#events-list li[data-kind="started"]');
  pi.setThrottled(0x50005);
  await page.waitForSelector('#events-list li[data-kind="undervoltage_detected"][data-severity="critical"]', { timeout: 20000 });
  const kinds = await page.locator('#events-list li').evaluateAll((els) => els.map((e) => e.dataset.kind));
  assert.ok(kinds.indexOf('undervoltage_detected') < kinds.indexOf('started'), kinds.join());
  assert.match(await page.locator('#events-list li[data-kind="undervoltage_detected"]').textContent(), /nder-voltage/);

  // The Pi's clock steps back an hour, then forward two: live points keep coming in, in
  // order, instead of being dropped as "not newer" (charts frozen for the size of the step).
  const stepped = await page.evaluate(async () => {
    const h = await import('./history.js');
    const base = { cpu: 1, mem: 1, swap: 0, temp: null, net_recv: null, net_sent: null, disk_read: null, disk_write: null, per_core: [] };
    const before = h.points.length;
    const t0 = h.points[before - 1].t;
    const back = [t0 - 3600e3, t0 - 3600e3 + 1000, t0 - 3600e3 + 2000];
    for (const t of back) h.addPoint({ ...base, t });
    const afterBack = h.points.length;
    const orderedBack = h.points.every((p, i, a) => i === 0 || a[i - 1].t < p.t);
    const forward = back[2] + 7200e3;
    h.addPoint({ ...base, t: forward });
    return { before, afterBack, orderedBack, newestBack: back[2], newest: h.points[h.points.length - 1].t, forward };
  });
  assert.equal(stepped.afterBack, stepped.before + 3, JSON.stringify(stepped));
  assert.ok(stepped.orderedBack, JSON.stringify(stepped));
  assert.equal(stepped.newest, stepped.forward, JSON.stringify(stepped));

  // Each range asks the server for its tier and every chart shows it.
  for (const [range, words] of [['1h', 'the last hour'], ['7d', 'the last 7 days'], ['1y', 'the last year']]) {
    const reply = page.waitForResponse((r) => r.url().includes(`/api/v1/history?range=${range}&points=`));
    await page.click(`#ranges button[data-range="${range}"]`);
    const r = await reply;
    assert.equal(r.status(), 200);
    const body = await r.json();
    assert.equal(body.range, range);
    assert.ok(body.points.length >= 1, `${range}: ${body.points.length} points`);
    // It asks for about as many points as the widest chart has CSS pixels, bounded.
    const points = Number(new URL(r.url()).searchParams.get('points'));
    const widest = await page.evaluate(async () => Math.max(...(await import('./charts.js')).charts.map((c) => c.canvas.clientWidth)));
    assert.ok(widest > 100, `charts ${widest} px wide`);
    assert.equal(points, Math.min(1000, Math.max(120, Math.round(widest))), r.url());
    assert.ok(body.points.length <= points, `${body.points.length} > ${points}`);
    assert.equal(await page.locator(`#ranges button[data-range="${range}"]`).getAttribute('aria-pressed'), 'true');
    for (const id of ['chart-cpu', 'chart-mem', 'chart-temp', 'chart-net', 'chart-disk']) {
      await page.waitForFunction(([id, words]) => document.querySelector('#' + id).getAttribute('aria-label').includes(words), [id, words]);
    }
    await page.waitForFunction((n) => Number(document.querySelector('#chart-cpu').dataset.points) === n, body.points.length);
    assert.equal(Number(await page.locator('#chart-temp').getAttribute('data-since')), body.points[0].t);
  }
  // Back to the live view: the 10-minute points again.
  await page.click('#ranges button[data-range="10m"]');
  await page.waitForFunction(() => document.querySelector('#chart-cpu').getAttribute('aria-label').includes('the last 10 minutes'));
  // Back to a range shown within the minute: drawn from the kept reply, not asked again.
  const asked = [];
  const onRequest = (r) => { if (r.url().includes('/api/v1/history?range=')) asked.push(r.url()); };
  page.on('request', onRequest);
  await page.click('#ranges button[data-range="7d"]');
  await page.waitForFunction(() => document.querySelector('#chart-cpu').getAttribute('aria-label').includes('the last 7 days'));
  await page.waitForTimeout(500);
  page.off('request', onRequest);
  assert.deepEqual(asked, []);
  assert.deepEqual(rec.errors, []);
});

// The Wi-Fi signal chart of the connectivity card, live and over a long range. The watched
// interface is loopback, listed in the fixture tree's /proc/net/wireless (the Pi 4's file with
// one more line) so that the kernel fallback reports it as a wireless link at −52 dBm.
test('Wi-Fi signal chart, live and from the history', async (t) => {
  const pi = piTree(t);
  const wireless = path.join(pi.dir, 'proc/net/wireless');
  fs.appendFileSync(wireless, '    lo: 0000   58.  -52.  -256        0      0      0      0      0        0\n');
  const { page, rec } = await openOnTree(t, pi);

  await page.waitForSelector('#wifi-chart', { state: 'visible' });
  await page.waitForFunction(() => document.querySelector('#chart-wifi').getAttribute('aria-label').includes('Signal now -52 dBm'));
  // The hour comes from the long-term history's raw tier: its points carry the signal.
  const reply = page.waitForResponse((r) => r.url().includes('/api/v1/history?range=1h&points='));
  await page.click('#ranges button[data-range="1h"]');
  const body = await (await reply).json();
  const known = body.points.filter((p) => Array.isArray(p.wifi_signal));
  assert.ok(known.length >= 1, JSON.stringify(body.points.slice(-2)));
  assert.deepEqual(known[known.length - 1].wifi_signal, [-52, -52, -52]);
  await page.waitForFunction(() => {
    const c = document.querySelector('#chart-wifi');
    return c.getAttribute('aria-label').includes('the last hour') && c.getAttribute('aria-label').includes('Signal now -52 dBm');
  });
  assert.deepEqual(rec.errors, []);
});
