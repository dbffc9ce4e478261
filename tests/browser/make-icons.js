// Renders the dashboard's PNG icons from the SVG of assets/favicon.svg with Debian's
// Chromium. Run once when the icon changes, and commit the PNGs:
//
//   cd tests/browser && node make-icons.js
//
// With pngquant installed (apt install pngquant) the PNGs are reduced to a palette: the
// 512 px ones from about 120 KB to 14 KB, with no visible difference.
//
// icon-192/512: the rounded tile as in the favicon, on transparency ("any").
// icon-maskable-512: the gradient fills the square and the mark stays inside the central
//   80 % circle that Android's masks keep ("maskable").
// apple-touch-icon (180): a full square; iOS rounds the corners itself and shows
//   transparency as black.
'use strict';

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { chromium } = require('playwright-core');

const ASSETS = path.resolve(__dirname, '..', '..', 'assets');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

const GRADIENT = `<defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1">
  <stop offset="0" stop-color="#e2336b"/><stop offset="1" stop-color="#a3123f"/></linearGradient></defs>`;
const MARK = '<polyline points="8,38 20,38 26,22 34,48 40,30 44,38 56,38" fill="none" stroke="#fff" stroke-width="5" stroke-linecap="round" stroke-linejoin="round"/>';

/** An SVG of the icon: `radius` of the tile's corners, `scale` of the mark about the centre. */
function svg(size, radius, scale) {
  const t = 32 * (1 - scale);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}" viewBox="0 0 64 64">${GRADIENT}
    <rect width="64" height="64" rx="${radius}" fill="url(#g)"/>
    <g transform="translate(${t} ${t}) scale(${scale})">${MARK}</g></svg>`;
}

const ICONS = [
  ['icon-192.png', 192, 14, 1],
  ['icon-512.png', 512, 14, 1],
  ['icon-maskable-512.png', 512, 0, 0.72],
  ['apple-touch-icon.png', 180, 0, 0.86],
];

(async () => {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--headless'] });
  const page = await browser.newPage({ deviceScaleFactor: 1 });
  for (const [name, size, radius, scale] of ICONS) {
    await page.setViewportSize({ width: size, height: size });
    await page.setContent(`<style>html,body{margin:0;background:transparent}svg{display:block}</style>${svg(size, radius, scale)}`);
    const file = path.join(ASSETS, name);
    await page.locator('svg').screenshot({ path: file, omitBackground: true });
    try {
      execFileSync('pngquant', ['--force', '--skip-if-larger', '--strip', '--quality', '85-100', '--speed', '1', '--output', file, file]);
    } catch (err) {
      if (err.code !== 'ENOENT') throw err; // no pngquant: keep the full-colour PNG
    }
    console.log(`${name}: ${size}×${size}, ${fs.statSync(file).size} bytes`);
  }
  await browser.close();
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
