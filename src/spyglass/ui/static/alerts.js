// The alert region (role="alert"): every error is shown here, readably, never as a blank page.

import { h } from './dom.js';

const HINTS = {
  0: 'Is the server running?',
  401: 'Enter a valid API key above.',
  403: 'This key lacks the scope this needs; use a key that has it.',
  503: 'The server is busy or not ready; try again shortly.',
};

function region() {
  return document.getElementById('alert');
}

export function clearAlert() {
  const el = region();
  el.replaceChildren();
  el.className = 'alert';
}

/** Show an ApiError, an InputError or any other error as "title: detail". */
export function showError(error) {
  if (error?.name === 'AbortError') return;
  const el = region();
  const parts = [];
  if (error?.name === 'ApiError') {
    const status = error.status ? ` (${error.status})` : '';
    parts.push(
      h(
        'p',
        {},
        h('strong', {}, `${error.title}${status}`),
        error.detail ? `: ${error.detail}` : '',
      ),
    );
    const fields = error.errors.filter((e) => e && (e.field || e.message));
    if (fields.length) {
      parts.push(
        h(
          'ul',
          {},
          fields.map((e) =>
            h(
              'li',
              {},
              e.field ? h('code', {}, e.field) : '',
              e.field && e.message ? ': ' : '',
              e.message ?? '',
            ),
          ),
        ),
      );
    }
    if (error.status === 429) {
      const wait = error.retryAfter ? `Retry after ${error.retryAfter} s.` : 'Retry later.';
      parts.push(h('p', { class: 'retry' }, wait));
    } else if (error.status === 503 && error.retryAfter) {
      parts.push(h('p', { class: 'retry' }, `Retry after ${error.retryAfter} s.`));
    }
    const hint = HINTS[error.status];
    if (hint && error.status !== 503) parts.push(h('p', { class: 'hint' }, hint));
    if (error.status === 503 && !error.retryAfter)
      parts.push(h('p', { class: 'hint' }, HINTS[503]));
  } else if (error?.name === 'InputError') {
    parts.push(h('p', {}, h('strong', {}, 'Check the form'), `: ${error.message}`));
    error.control?.focus();
  } else {
    parts.push(h('p', {}, h('strong', {}, 'Something went wrong'), `: ${error?.message ?? error}`));
  }
  const dismiss = h('button', { type: 'button', class: 'link', onclick: clearAlert }, 'Dismiss');
  el.className = 'alert error';
  el.replaceChildren(h('div', { class: 'alert-body' }, parts), dismiss);
}

/** A non-error notice in the same region (e.g. "key saved"). */
export function showNotice(text) {
  const el = region();
  el.className = 'alert notice';
  el.replaceChildren(h('p', {}, text));
}
