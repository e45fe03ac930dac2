// Building DOM nodes without innerHTML: every string from the server becomes a text node.

let counter = 0;

/** A fresh element id, so that each label can point at its control. */
export function uid(prefix = 'sg') {
  counter += 1;
  return `${prefix}-${counter}`;
}

/**
 * h('button', {type: 'button', class: 'primary', onclick: fn}, 'Search')
 * Props: `class`, `text`, `on<event>` (a listener), the DOM properties `value`,
 * `checked`, `disabled`, `hidden`, `open` and `selected`; any other prop is an
 * attribute (null, undefined and false leave it out). Children: nodes, strings,
 * numbers or (nested) arrays of them; null and false are skipped.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null) continue;
    if (name === 'class') el.className = value;
    else if (name === 'text') el.textContent = value;
    else if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (PROPERTIES.has(name)) el[name] = value;
    else if (value !== false) el.setAttribute(name, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

const PROPERTIES = new Set(['value', 'checked', 'disabled', 'hidden', 'open', 'selected']);

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** A labelled control: <div class="field"><label for=id>text</label>control hint</div>. */
export function field(label, control, hint = null) {
  if (!control.id) control.id = uid('f');
  const parts = [h('label', { for: control.id }, label), control];
  if (hint) {
    const note = h('small', { id: uid('hint'), class: 'hint' }, hint);
    control.setAttribute('aria-describedby', note.id);
    parts.push(note);
  }
  return h('div', { class: 'field' }, parts);
}

/** A group of radio buttons in a fieldset: [{value, label}], the checked value. */
export function radios(legend, name, options, checked) {
  const group = h('fieldset', { class: 'radios' }, h('legend', {}, legend));
  for (const option of options) {
    const input = h('input', {
      type: 'radio',
      name,
      id: uid(name),
      value: option.value,
      checked: option.value === checked,
      disabled: option.disabled ?? false,
    });
    group.append(h('label', { for: input.id, class: 'radio' }, input, ` ${option.label}`));
  }
  return group;
}

/** The value of the checked radio button of a group. */
export function checkedValue(group) {
  return group.querySelector('input[type=radio]:checked')?.value ?? null;
}

/** "3.2 ms", "1.24 s". */
export function duration(ms) {
  if (!Number.isFinite(ms)) return '–';
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  return `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
}

/** A number with at most `digits` decimals, trailing zeros dropped. */
export function num(value, digits = 3) {
  if (typeof value !== 'number' || !Number.isFinite(value)) return String(value ?? '–');
  return String(Number(value.toFixed(digits)));
}

/** A path segment for a collection name; item ids keep their slashes. */
export function itemPath(id) {
  return String(id).split('/').map(encodeURIComponent).join('/');
}

export function collectionPath(name) {
  return `/collections/${encodeURIComponent(name)}`;
}
