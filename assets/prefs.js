// Preferences: theme, temperature unit, network rate unit and clock, remembered in the
// browser (localStorage). The controls are the <select data-pref="…"> elements of the page.
// theme.js applies a remembered theme before the first paint; this module keeps it applied.

const KEY = 'pistats.prefs';

/** Every preference with its allowed values; the first one is the default. */
export const CHOICES = {
  theme: ['system', 'light', 'dark'],
  temp: ['c', 'f'],
  rate: ['bytes', 'bits'],
  clock: localeClock() === '12' ? ['12', '24'] : ['24', '12'],
};

/** Page colours for the browser's UI (theme-color), as in style.css's --bg. */
const THEME_COLOR = { light: '#f2f4f7', dark: '#0c1015' };

const darkQuery = window.matchMedia('(prefers-color-scheme: dark)');
const listeners = [];

/** The current preferences; read freely, change with setPref. */
export const prefs = load();

// The user's locale decides the default clock: 12 h in en-US, 24 h in most others.
function localeClock() {
  try {
    const hc = new Intl.DateTimeFormat(undefined, { hour: 'numeric' }).resolvedOptions().hourCycle;
    return hc === 'h11' || hc === 'h12' ? '12' : '24';
  } catch (e) {
    return '24';
  }
}

function load() {
  let saved = {};
  try {
    saved = JSON.parse(localStorage.getItem(KEY) || '{}') || {};
  } catch (e) {} // storage disabled or garbage: defaults
  const out = {};
  for (const [name, values] of Object.entries(CHOICES)) {
    out[name] = values.includes(saved[name]) ? saved[name] : values[0];
  }
  return out;
}

/** Sets one preference, remembers it, applies it and tells the listeners. */
export function setPref(name, value) {
  if (!CHOICES[name] || !CHOICES[name].includes(value) || prefs[name] === value) return;
  prefs[name] = value;
  try {
    localStorage.setItem(KEY, JSON.stringify(prefs));
  } catch (e) {} // storage disabled: the choice lasts for this page only
  if (name === 'theme') applyTheme();
  notify();
}

/** Calls fn() after any preference, or the system's colour scheme, changed. */
export function onPrefsChange(fn) {
  listeners.push(fn);
}

function notify() {
  for (const fn of listeners) fn(prefs);
}

/** 'light' or 'dark': the choice, or the system's when the choice is 'system'. */
export function effectiveTheme() {
  return prefs.theme === 'system' ? (darkQuery.matches ? 'dark' : 'light') : prefs.theme;
}

function applyTheme() {
  const theme = effectiveTheme();
  const root = document.documentElement;
  if (root.dataset.theme !== theme) root.dataset.theme = theme;
  // The two scheme-bound theme-color metas follow an explicit choice too.
  for (const meta of document.querySelectorAll('meta[name="theme-color"]')) {
    const own = /dark/.test(meta.media) ? 'dark' : 'light';
    meta.content = THEME_COLOR[prefs.theme === 'system' ? own : theme];
  }
}

/** Wires the page's <select data-pref> controls and starts following the system scheme. */
export function startPrefs() {
  for (const el of document.querySelectorAll('select[data-pref]')) {
    const name = el.dataset.pref;
    el.value = prefs[name];
    el.addEventListener('change', () => setPref(name, el.value));
  }
  // The settings disclosure closes like a menu: Escape (focus back on its button) or a
  // click elsewhere.
  const box = document.getElementById('prefs');
  if (box) {
    box.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape' && box.open) {
        box.open = false;
        box.querySelector('summary').focus();
      }
    });
    document.addEventListener('click', (ev) => {
      if (box.open && !box.contains(ev.target)) box.open = false;
    });
  }
  const onScheme = () => {
    applyTheme();
    notify();
  };
  if (darkQuery.addEventListener) darkQuery.addEventListener('change', onScheme);
  applyTheme();
}
