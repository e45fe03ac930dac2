// Text collections (text, text-fast, none): a search with a mode switch, and an Ask tab.

import { request } from '../api.js';
import { clearAlert, showError } from '../alerts.js';
import { queryOptions, timing, withFilter } from '../controls.js';
import { checkedValue, collectionPath, field, h, radios, uid } from '../dom.js';
import { queryTerms } from '../highlight.js';
import { passageList } from '../results.js';
import { makeTabs } from '../tabs.js';
import { askForm } from './ask.js';

/** The modes a collection's encoder allows, and the one it uses when none is sent. */
export function modesFor(encoder) {
  const keywordOnly = encoder === 'none';
  return {
    options: [
      { value: 'hybrid', label: 'Hybrid', disabled: keywordOnly },
      { value: 'vector', label: 'Vector (meaning)', disabled: keywordOnly },
      { value: 'keyword', label: 'Keyword (words)' },
    ],
    initial: keywordOnly ? 'keyword' : 'hybrid',
  };
}

function searchForm(collection, maxK) {
  const query = h('input', {
    type: 'search',
    required: true,
    autocomplete: 'off',
    class: 'query-text',
    placeholder: 'how do bees make honey',
  });
  const modes = modesFor(collection.encoder);
  const mode = radios('Search mode', uid('mode'), modes.options, modes.initial);
  const options = queryOptions({ k: 10, maxK });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Search');
  const form = h(
    'form',
    { class: 'query', role: 'search', 'aria-label': `Search ${collection.name}` },
    h('div', { class: 'row' }, field('Search text', query), submit),
    mode,
    options.element,
  );
  const status = timing();
  const results = h('div', { class: 'results' });
  let controller = null;

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearAlert();
    controller?.abort();
    controller = new AbortController();
    try {
      const { k, filter } = options.read();
      const body = withFilter({ text: query.value, k, mode: checkedValue(mode) }, filter);
      status.busy();
      submit.disabled = true;
      const { data, roundTripMs } = await request(`${collectionPath(collection.name)}/search`, {
        method: 'POST',
        json: body,
        signal: controller.signal,
      });
      results.replaceChildren(passageList(data.hits, queryTerms(query.value)));
      status.done(data.took_ms, roundTripMs, data.hits.length);
    } catch (error) {
      if (error.name !== 'AbortError') status.clear();
      showError(error);
    } finally {
      submit.disabled = false;
    }
  });

  return {
    element: h('div', {}, form, status.element, results),
    destroy: () => controller?.abort(),
  };
}

export function mount(container, collection, context) {
  const search = searchForm(collection, context.maxK);
  const ask = askForm(collection, modesFor(collection.encoder));
  const tabs = makeTabs('Search or ask', [
    { title: 'Search', panel: search.element },
    { title: 'Ask', panel: ask.element },
  ]);
  container.replaceChildren(tabs.element);
  return {
    unmount() {
      search.destroy();
      ask.destroy();
    },
  };
}
