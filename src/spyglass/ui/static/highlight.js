// Marks the words of a query in a passage (<mark>), so a reader sees why it matched.

import { h } from './dom.js';

const STOP = new Set(
  (
    'a an and are as at be but by can did do does for from had has have how i if in into is it its ' +
    'me my no not of on or our so than that the their them then there these they this to was we ' +
    'were what when where which who why will with you your'
  ).split(' '),
);

/** The words of a query worth marking: lowercase, no stop words, no duplicates. */
export function queryTerms(query) {
  const words = query.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
  return [...new Set(words.filter((w) => w.length > 1 && !STOP.has(w)))];
}

/** A crude stem, so that "bees" also marks "bee" and "honeybees" marks nothing extra. */
function stem(word) {
  for (const suffix of ['ing', 'ed', 'es', 's']) {
    if (word.endsWith(suffix) && word.length - suffix.length >= 3)
      return word.slice(0, -suffix.length);
  }
  return word;
}

function escape(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** A fragment of `text` with every word starting with a query term's stem in <mark>. */
export function highlighted(text, terms) {
  const fragment = document.createDocumentFragment();
  if (!text) return fragment;
  const stems = [...new Set(terms.map(stem))].sort((a, b) => b.length - a.length).map(escape);
  if (!stems.length) {
    fragment.append(text);
    return fragment;
  }
  const pattern = new RegExp(`(?<![\\p{L}\\p{N}])(?:${stems.join('|')})[\\p{L}\\p{N}]*`, 'giu');
  let at = 0;
  for (const match of text.matchAll(pattern)) {
    fragment.append(text.slice(at, match.index), h('mark', {}, match[0]));
    at = match.index + match[0].length;
  }
  fragment.append(text.slice(at));
  return fragment;
}
