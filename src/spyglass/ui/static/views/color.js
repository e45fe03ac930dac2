// Color collections: a palette of up to five weighted colors, fast or accurate, or a photo.

import { InputError, request } from '../api.js';
import { clearAlert, showError } from '../alerts.js';
import { queryOptions, timing, withFilter } from '../controls.js';
import { checkedValue, collectionPath, field, h, radios, uid } from '../dom.js';
import { ImageLoader } from '../images.js';
import { imageGrid } from '../results.js';
import { photoSearch } from './image.js';

const MAX_COLORS = 5;
const DOMINANT_COLORS = 5;
const START = [
  ['#d62828', 60],
  ['#fcbf49', 40],
];

/** "#abc", "abc", "#aabbcc" → "#aabbcc"; anything else → null. */
export function normalHex(text) {
  const value = text.trim().replace(/^#/, '').toLowerCase();
  if (/^[0-9a-f]{3}$/.test(value)) return `#${[...value].map((c) => c + c).join('')}`;
  if (/^[0-9a-f]{6}$/.test(value)) return `#${value}`;
  return null;
}

function palette(onChange) {
  const rows = h('ol', { class: 'palette' });
  const preview = h('div', { class: 'palette-preview', role: 'img' });
  const add = h('button', { type: 'button' }, 'Add a color');
  let entries = [];

  function renumber() {
    entries.forEach((entry, i) => {
      const n = i + 1;
      entry.pickerLabel.textContent = `Color ${n}`;
      entry.hexLabel.textContent = `Color ${n} hex`;
      entry.weightLabel.textContent = `Color ${n} weight`;
      entry.remove.setAttribute('aria-label', `Remove color ${n}`);
      entry.remove.disabled = entries.length === 1;
    });
    add.disabled = entries.length >= MAX_COLORS;
    refresh();
  }

  function refresh() {
    const total = entries.reduce((sum, e) => sum + Number(e.weight.value), 0) || 1;
    const blocks = entries.map((e) => {
      const share = Number(e.weight.value) / total;
      e.share.textContent = `${Math.round(share * 100)}%`;
      const block = h('span', { class: 'block' });
      block.style.setProperty('--swatch', e.picker.value);
      block.style.setProperty('--weight', String(share));
      return block;
    });
    preview.replaceChildren(...blocks);
    preview.setAttribute(
      'aria-label',
      `Palette: ${entries.map((e) => `${e.picker.value} ${e.share.textContent}`).join(', ')}`,
    );
    onChange?.();
  }

  function addColor(hex, weight) {
    const picker = h('input', { type: 'color', value: hex, id: uid('color') });
    const text = h('input', {
      type: 'text',
      value: hex,
      id: uid('hex'),
      class: 'hex',
      maxlength: 7,
      spellcheck: 'false',
      autocomplete: 'off',
    });
    const slider = h('input', {
      type: 'range',
      min: 1,
      max: 100,
      step: 1,
      value: String(weight),
      id: uid('weight'),
    });
    const share = h('output', { for: slider.id, class: 'share' });
    const remove = h('button', { type: 'button', class: 'remove' }, '×');
    const entry = {
      picker,
      hex: text,
      weight: slider,
      share,
      remove,
      pickerLabel: h('label', { for: picker.id }),
      hexLabel: h('label', { for: text.id }),
      weightLabel: h('label', { for: slider.id }),
    };
    const row = h(
      'li',
      { class: 'color-row' },
      h('div', { class: 'field' }, entry.pickerLabel, picker),
      h('div', { class: 'field' }, entry.hexLabel, text),
      h(
        'div',
        { class: 'field weight' },
        entry.weightLabel,
        h('div', { class: 'slider' }, slider, share),
      ),
      remove,
    );
    picker.addEventListener('input', () => {
      text.value = picker.value;
      text.setAttribute('aria-invalid', 'false');
      refresh();
    });
    text.addEventListener('input', () => {
      const value = normalHex(text.value);
      text.setAttribute('aria-invalid', String(value === null));
      if (value) {
        picker.value = value;
        refresh();
      }
    });
    slider.addEventListener('input', refresh);
    remove.addEventListener('click', () => {
      entries = entries.filter((e) => e !== entry);
      row.remove();
      renumber();
      entries[0]?.picker.focus();
    });
    entries.push(entry);
    rows.append(row);
    renumber();
    return entry;
  }

  add.addEventListener('click', () => {
    const entry = addColor('#2a9d8f', 30);
    entry.picker.focus();
  });
  for (const [hex, weight] of START) addColor(hex, weight);

  return {
    element: h(
      'fieldset',
      { class: 'palette-builder' },
      h('legend', {}, `Palette (up to ${MAX_COLORS} colors)`),
      rows,
      h('div', { class: 'row' }, add, preview),
    ),
    /** {colors, weights} for the request, weights summing to 1. */
    read() {
      const total = entries.reduce((sum, e) => sum + Number(e.weight.value), 0);
      const colors = entries.map((e, i) => {
        const value = normalHex(e.hex.value);
        if (!value) throw new InputError(`color ${i + 1} is not a hex color like #ff8800`, e.hex);
        return value;
      });
      const weights = entries.map((e) => Number((Number(e.weight.value) / total).toFixed(4)));
      return { colors, weights };
    },
  };
}

export function mount(container, collection, context) {
  const loader = new ImageLoader();
  const builder = palette();
  const speed = radios(
    'Speed',
    uid('rerank'),
    [
      { value: 'fast', label: 'Fast (index only)' },
      { value: 'accurate', label: 'Accurate (rerank by color distance)' },
    ],
    'accurate',
  );
  const options = queryOptions({ k: 12, maxK: context.maxK });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Search by palette');
  const form = h(
    'form',
    { class: 'query', role: 'search', 'aria-label': `Search ${collection.name} by palette` },
    builder.element,
    speed,
    options.element,
    submit,
  );
  const status = timing();
  const results = h('div', { class: 'results' });
  const rerank = () => checkedValue(speed) === 'accurate';
  let controller = null;

  function show(data, roundTripMs) {
    loader.reset();
    results.replaceChildren(imageGrid(data.hits, collection.name, loader));
    status.done(data.took_ms, roundTripMs, data.hits.length);
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearAlert();
    controller?.abort();
    controller = new AbortController();
    try {
      const { colors, weights } = builder.read();
      const { k, filter } = options.read();
      const body = withFilter(
        { colors, weights, k, rerank: rerank(), dominant_colors: DOMINANT_COLORS },
        filter,
      );
      status.busy();
      submit.disabled = true;
      const { data, roundTripMs } = await request(`${collectionPath(collection.name)}/search`, {
        method: 'POST',
        json: body,
        signal: controller.signal,
      });
      show(data, roundTripMs);
    } catch (error) {
      if (error.name !== 'AbortError') status.clear();
      showError(error);
    } finally {
      submit.disabled = false;
    }
  });

  const photo = photoSearch(collection, options, {
    show,
    status,
    extra(formData) {
      formData.append('rerank', String(rerank()));
      formData.append('dominant_colors', String(DOMINANT_COLORS));
    },
  });
  container.replaceChildren(
    h('h2', { class: 'view-title' }, 'Find images by color'),
    form,
    h(
      'details',
      { class: 'by-photo' },
      h('summary', {}, 'Or search with a photo’s colors'),
      photo.element,
    ),
    status.element,
    results,
  );
  return {
    unmount() {
      controller?.abort();
      photo.destroy();
      loader.reset();
    },
  };
}
