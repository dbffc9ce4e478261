// DOM helpers: the page is built once and then only patched (textContent, attributes), and
// only where something changed, so a Pi Zero's browser keeps up.

import { isNum } from './format.js';

export const $ = (sel) => document.querySelector(sel);

/** Every element with an id, by camel-cased id: ui.connText is #conn-text. */
export const ui = {};
for (const el of document.querySelectorAll('[id]')) ui[el.id.replace(/-(\w)/g, (_, c) => c.toUpperCase())] = el;

// Writes only when the text changed: no needless layout or mutation events.
export function setText(el, s) {
  if (el._text !== s) {
    el._text = s;
    el.textContent = s;
  }
}

export function setAttr(el, name, value) {
  if (value == null) {
    if (el.hasAttribute(name)) el.removeAttribute(name);
  } else if (el.getAttribute(name) !== value) {
    el.setAttribute(name, value);
  }
}

export function show(el, visible) {
  if (el.hidden === visible) el.hidden = !visible;
}

export function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else el.setAttribute(k, v);
    }
  }
  for (const kid of kids) if (kid != null) el.append(kid);
  return el;
}

export function makeMeter(label) {
  const el = h('div', {
    class: 'meter', role: 'meter', 'aria-label': label,
    'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': '0', 'aria-valuetext': 'no reading',
  }, h('span'));
  return { el, bar: el.firstChild };
}

// value is a percentage; levels colour full disks and saturated memory.
export function setMeter(m, value, levels = true) {
  const ok = isNum(value);
  const v = ok ? Math.max(0, Math.min(100, value)) : 0;
  const key = ok ? v.toFixed(1) : '';
  if (m._key === key) return;
  m._key = key;
  m.bar.style.transform = `scaleX(${v / 100})`;
  // a meter must always have a value: an unknown one is 0 with words saying so
  setAttr(m.el, 'aria-valuenow', ok ? key : '0');
  setAttr(m.el, 'aria-valuetext', ok ? null : 'no reading');
  setAttr(m.el, 'data-level', levels && ok ? (v >= 90 ? 'crit' : v >= 75 ? 'warn' : '') : '');
}

// Reuses one element group per key; touches the DOM order only when the key set changes.
export class KeyedList {
  constructor(container, create, empty) {
    this.container = container;
    this.create = create;
    this.empty = empty;
    this.items = new Map();
    this.signature = null;
  }

  update(entries, fill) {
    const signature = entries.map((e) => e[0]).join('\u0000');
    if (signature !== this.signature) {
      const next = new Map();
      for (const [key] of entries) next.set(key, this.items.get(key) || this.create(key));
      this.container.replaceChildren(...Array.from(next.values(), (item) => item.root));
      this.items = next;
      this.signature = signature;
      if (this.empty) show(this.empty, entries.length === 0);
    }
    for (const [key, data] of entries) fill(this.items.get(key), data, key);
  }
}
