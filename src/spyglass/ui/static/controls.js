// Controls every view shares: k, the payload filter (JSON, checked before sending), and
// the line that reports the server's took_ms and the round trip measured here.

import { InputError } from './api.js';
import { duration, field, h, uid } from './dom.js';

/** k and a filter textarea. read() → {k, filter} (filter null when empty) or InputError. */
export function queryOptions({ k = 10, maxK = 1000, filter = true, kLabel = 'Results (k)' } = {}) {
  const kInput = h('input', {
    type: 'number',
    min: 1,
    max: maxK,
    step: 1,
    value: String(k),
    inputmode: 'numeric',
    class: 'k',
  });
  const parts = [field(kLabel, kInput)];
  let filterInput = null;
  let filterError = null;
  if (filter) {
    filterInput = h('textarea', {
      rows: 2,
      spellcheck: 'false',
      placeholder: '{"source": "honeybees.md"}',
      class: 'filter',
    });
    filterError = h('small', { id: uid('err'), class: 'field-error', 'aria-live': 'polite' });
    const wrapper = field(
      'Filter on payload fields (JSON)',
      filterInput,
      'Optional; see the filter language in docs/filters.md.',
    );
    filterInput.setAttribute(
      'aria-describedby',
      `${filterInput.getAttribute('aria-describedby')} ${filterError.id}`,
    );
    wrapper.append(filterError);
    wrapper.classList.add('wide');
    filterInput.addEventListener('input', () => check(false));
    parts.push(wrapper);
  }

  function check(strict) {
    if (!filterInput) return null;
    const text = filterInput.value.trim();
    let problem = '';
    let value = null;
    if (text) {
      try {
        value = JSON.parse(text);
        if (typeof value !== 'object' || value === null || Array.isArray(value)) {
          problem = 'the filter must be a JSON object, like {"lang": "en"}';
        }
      } catch (error) {
        problem = `the filter is not valid JSON (${error.message})`;
      }
    }
    filterInput.setAttribute('aria-invalid', String(Boolean(problem)));
    filterError.textContent = problem && strict ? problem : '';
    if (problem && strict) throw new InputError(problem, filterInput);
    return problem ? null : value;
  }

  function read() {
    const k = Number(kInput.value);
    if (!Number.isInteger(k) || k < 1 || k > maxK) {
      throw new InputError(`k must be a whole number from 1 to ${maxK}`, kInput);
    }
    return { k, filter: check(true) };
  }

  return { element: h('div', { class: 'options' }, parts), read };
}

/** The line under a form: what the server and the round trip took, and how many hits. */
export function timing() {
  const el = h('p', { class: 'timing', role: 'status' });
  return {
    element: el,
    busy(text = 'Searching…') {
      el.textContent = text;
    },
    done(tookMs, roundTripMs, count, noun = 'result') {
      const what = count === undefined ? '' : `${count} ${noun}${count === 1 ? '' : 's'} · `;
      const server = tookMs === undefined ? '' : `server ${duration(tookMs)} · `;
      el.textContent = `${what}${server}round trip ${duration(roundTripMs)}`;
    },
    clear() {
      el.textContent = '';
    },
  };
}

/** Adds {filter} to a body only when there is one. */
export function withFilter(body, filter) {
  return filter ? { ...body, filter } : body;
}
