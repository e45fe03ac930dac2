// The Ask tab: a question answered from the collection's passages, streamed as it is
// written (server-sent events read from fetch), then its numbered citations.

import { ApiError, send } from '../api.js';
import { clearAlert, showError } from '../alerts.js';
import { queryOptions, timing, withFilter } from '../controls.js';
import { checkedValue, collectionPath, duration, field, h, radios, uid } from '../dom.js';
import { readEvents } from '../events.js';
import { sourceOf } from '../results.js';

/** The answer text with each [n] made a link to citation n (when there is one). */
function linkedAnswer(answer, anchors) {
  const fragment = document.createDocumentFragment();
  let at = 0;
  for (const match of answer.matchAll(/\[(\d+)\]/g)) {
    const anchor = anchors.get(Number(match[1]));
    if (!anchor) continue;
    fragment.append(
      answer.slice(at, match.index),
      h('a', { href: `#${anchor}`, class: 'cite' }, match[0]),
    );
    at = match.index + match[0].length;
  }
  fragment.append(answer.slice(at));
  return fragment;
}

function passages(items, anchors, heading) {
  return [
    h('h3', {}, heading),
    h(
      'ol',
      { class: 'citations' },
      items.map((c) => {
        const id = uid('cite');
        anchors?.set(c.number, id);
        const where = sourceOf(c) || c.id;
        return h(
          'li',
          { value: c.number, id },
          h(
            'span',
            { class: 'cite-head' },
            `[${c.number}] `,
            h('span', { class: 'hit-source' }, where),
          ),
          h('blockquote', {}, c.text),
        );
      }),
    ),
  ];
}

export function askForm(collection, modes) {
  const question = h('textarea', {
    rows: 2,
    required: true,
    class: 'question',
    placeholder: 'How do bees make honey?',
  });
  const mode = radios('Retrieval mode', uid('askmode'), modes.options, modes.initial);
  const options = queryOptions({ k: 5, maxK: 20, kLabel: 'Passages to read (k)' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Ask');
  const stop = h('button', { type: 'button', disabled: true }, 'Stop');
  const form = h(
    'form',
    { class: 'query', 'aria-label': `Ask ${collection.name}` },
    h(
      'div',
      { class: 'row' },
      field('Question', question),
      h('div', { class: 'buttons' }, submit, stop),
    ),
    mode,
    options.element,
  );
  const status = timing();
  const answer = h('section', {
    class: 'answer',
    'aria-live': 'polite',
    'aria-label': 'Answer',
    hidden: true,
  });
  let controller = null;

  stop.addEventListener('click', () => controller?.abort());
  question.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearAlert();
    controller?.abort();
    controller = new AbortController();
    const text = h('p', { class: 'answer-text' });
    const sources = h('details', { class: 'sources' });
    answer.replaceChildren(h('h3', {}, 'Answer'), text);
    try {
      const { k, filter } = options.read();
      const body = withFilter(
        { question: question.value, k, stream: true, mode: checkedValue(mode) },
        filter,
      );
      answer.hidden = false;
      answer.setAttribute('aria-busy', 'true');
      status.busy('Retrieving passages…');
      submit.disabled = true;
      stop.disabled = false;
      const { response, started } = await send(`${collectionPath(collection.name)}/ask`, {
        method: 'POST',
        json: body,
        accept: 'text/event-stream',
        signal: controller.signal,
      });
      let written = '';
      let finished = false;
      for await (const message of readEvents(response)) {
        const data = JSON.parse(message.data);
        if (message.event === 'sources') {
          sources.replaceChildren(
            h('summary', {}, `Retrieved passages (${data.sources.length})`),
            ...passages(data.sources, null, 'Passages'),
          );
          status.busy(`Answering from ${data.sources.length} passages…`);
        } else if (message.event === 'message' && typeof data.delta === 'string') {
          written += data.delta;
          text.textContent = written;
        } else if (message.event === 'error') {
          throw new ApiError(data.status ?? 503, data);
        } else if (message.event === 'done') {
          finished = true;
          const roundTripMs = performance.now() - started;
          const anchors = new Map();
          const parts = [h('h3', {}, 'Answer')];
          if (data.abstained) {
            parts.push(
              h(
                'p',
                { class: 'abstained' },
                h('strong', {}, 'No answer. '),
                data.reason || 'The passages do not support an answer.',
              ),
            );
          } else {
            const cited = data.citations.length
              ? passages(data.citations, anchors, 'Citations')
              : [];
            parts.push(
              h('p', { class: 'answer-text' }, linkedAnswer(data.answer, anchors)),
              ...cited,
            );
          }
          parts.push(
            h(
              'p',
              { class: 'meta' },
              `Answered by ${data.model} · server ${duration(data.took_ms)} · round trip ${duration(roundTripMs)}`,
            ),
            sources,
          );
          answer.replaceChildren(...parts);
          status.done(data.took_ms, roundTripMs, data.citations.length, 'citation');
        }
      }
      if (!finished)
        throw new ApiError(502, {
          title: 'Incomplete answer',
          detail: 'the stream ended before the answer was done',
        });
    } catch (error) {
      if (error.name === 'AbortError') status.busy('Stopped.');
      else status.clear();
      showError(error);
    } finally {
      answer.removeAttribute('aria-busy');
      submit.disabled = false;
      stop.disabled = true;
    }
  });

  return {
    element: h('div', {}, form, status.element, answer),
    destroy: () => controller?.abort(),
  };
}
