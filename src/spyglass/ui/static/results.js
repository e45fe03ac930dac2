// Result lists: passages (text collections) and image grids (image, clip, color).

import { h, num } from './dom.js';
import { highlighted } from './highlight.js';

/** Where a passage comes from: "honeybees.md, page 3". */
export function sourceOf(payload) {
  if (!payload || typeof payload !== 'object') return '';
  const source = payload.source ?? payload.file_name ?? '';
  const page = payload.page;
  return [source, page !== undefined && page !== null ? `page ${page}` : '']
    .filter(Boolean)
    .join(', ');
}

/** An ordered list of text hits with the query's words marked. */
export function passageList(hits, terms) {
  if (!hits.length) return h('p', { class: 'empty' }, 'No results.');
  return h(
    'ol',
    { class: 'hits', 'aria-label': 'Results' },
    hits.map((hit) =>
      h(
        'li',
        { class: 'hit' },
        h(
          'div',
          { class: 'hit-head' },
          h('span', { class: 'hit-id' }, hit.id),
          sourceOf(hit.payload) ? h('span', { class: 'hit-source' }, sourceOf(hit.payload)) : null,
          h('span', { class: 'score' }, `score ${num(hit.score, 4)}`),
        ),
        hit.text
          ? h('p', { class: 'passage' }, highlighted(hit.text, terms))
          : h('p', { class: 'empty' }, '(no text)'),
      ),
    ),
  );
}

/** Color swatches: [{hex, weight}] as small blocks sized by weight. */
export function swatches(colors) {
  if (!Array.isArray(colors) || !colors.length) return null;
  const label = colors.map((c) => `${c.hex} ${Math.round((c.weight ?? 0) * 100)}%`).join(', ');
  return h(
    'ul',
    { class: 'swatches', 'aria-label': `Dominant colors: ${label}` },
    colors.map((c) => {
      const item = h('li', {
        class: 'swatch',
        title: `${c.hex} · ${Math.round((c.weight ?? 0) * 100)}%`,
      });
      item.style.setProperty('--swatch', c.hex); // CSSOM, not a style attribute: allowed by the CSP
      item.style.setProperty('--weight', String(Math.max(c.weight ?? 0, 0.02)));
      return item;
    }),
  );
}

/** A grid of image hits; images come through `loader` (ImageLoader). */
export function imageGrid(hits, collection, loader) {
  if (!hits.length) return h('p', { class: 'empty' }, 'No results.');
  return h(
    'ol',
    { class: 'grid', 'aria-label': 'Results' },
    hits.map((hit, i) => {
      const img = h('img', { alt: `Result ${i + 1}: ${hit.id}`, decoding: 'async' });
      loader.load(img, collection, hit.id);
      return h(
        'li',
        { class: 'card' },
        h('div', { class: 'thumb loading' }, img),
        h(
          'div',
          { class: 'card-body' },
          h('span', { class: 'hit-id' }, hit.id),
          h('span', { class: 'score' }, `score ${num(hit.score, 4)}`),
          swatches(hit.colors),
        ),
      );
    }),
  );
}
