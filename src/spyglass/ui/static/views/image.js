// Image and CLIP collections: search by a photo (file, drop, paste); CLIP also by text.

import { request } from '../api.js';
import { clearAlert, showError } from '../alerts.js';
import { queryOptions, timing, withFilter } from '../controls.js';
import { collectionPath, field, h } from '../dom.js';
import { ImageLoader } from '../images.js';
import { imageGrid } from '../results.js';
import { imagePicker } from '../upload.js';

/**
 * Search by photo: the picker, the shared options, and a search on every new photo.
 * `extra(form)` adds form fields (the color view's rerank); `show(data, ms)` renders.
 */
export function photoSearch(collection, options, { extra = () => {}, show, status }) {
  let last = null;
  let controller = null;
  const again = h('button', { type: 'button', disabled: true }, 'Search again');

  async function search(file) {
    clearAlert();
    controller?.abort();
    controller = new AbortController();
    try {
      const { k, filter } = options.read();
      const form = new FormData();
      form.append('file', file, file.name || 'pasted-image');
      form.append('k', String(k));
      if (filter) form.append('filter', JSON.stringify(filter));
      extra(form);
      status.busy();
      const { data, roundTripMs } = await request(
        `${collectionPath(collection.name)}/search/upload`,
        { method: 'POST', form, signal: controller.signal },
      );
      show(data, roundTripMs);
    } catch (error) {
      if (error.name !== 'AbortError') status.clear();
      showError(error);
    }
  }

  const picker = imagePicker({
    onFile(file) {
      last = file;
      again.disabled = false;
      search(file);
    },
  });
  again.addEventListener('click', () => last && search(last));
  return {
    element: h('div', { class: 'photo-search' }, picker.element, again),
    destroy() {
      controller?.abort();
      picker.destroy();
    },
  };
}

export function mount(container, collection, context) {
  const loader = new ImageLoader();
  const options = queryOptions({ k: 12, maxK: context.maxK });
  const status = timing();
  const results = h('div', { class: 'results' });
  function show(data, roundTripMs) {
    loader.reset();
    results.replaceChildren(imageGrid(data.hits, collection.name, loader));
    status.done(data.took_ms, roundTripMs, data.hits.length);
  }
  const photo = photoSearch(collection, options, { show, status });
  const parts = [h('h2', { class: 'view-title' }, 'Find similar images'), photo.element];
  let controller = null;

  if (collection.encoder === 'clip') {
    const text = h('input', {
      type: 'search',
      autocomplete: 'off',
      required: true,
      placeholder: 'a red dress',
    });
    const form = h(
      'form',
      { class: 'query', role: 'search', 'aria-label': `Search ${collection.name} by text` },
      h(
        'div',
        { class: 'row' },
        field('Describe the image', text),
        h('button', { type: 'submit', class: 'primary' }, 'Search'),
      ),
    );
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      clearAlert();
      controller?.abort();
      controller = new AbortController();
      try {
        const { k, filter } = options.read();
        status.busy();
        const { data, roundTripMs } = await request(`${collectionPath(collection.name)}/search`, {
          method: 'POST',
          json: withFilter({ text: text.value, k }, filter),
          signal: controller.signal,
        });
        show(data, roundTripMs);
      } catch (error) {
        if (error.name !== 'AbortError') status.clear();
        showError(error);
      }
    });
    parts.push(h('p', { class: 'or' }, 'or'), form);
  }
  container.replaceChildren(...parts, options.element, status.element, results);
  return {
    unmount() {
      controller?.abort();
      photo.destroy();
      loader.reset();
    },
  };
}
