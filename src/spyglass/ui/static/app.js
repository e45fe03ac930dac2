// The page: the API key, the sections (search, admin), the collection picker, and the
// view that fits the chosen collection's encoder.

import { getKey, request, setKey } from './api.js';
import { clearAlert, showError, showNotice } from './alerts.js';
import { num } from './dom.js';
import { tablist } from './tabs.js';
import * as admin from './views/admin.js';
import * as color from './views/color.js';
import * as face from './views/face.js';
import * as image from './views/image.js';
import * as text from './views/text.js';

const VIEWS = { text, 'text-fast': text, none: text, image, clip: image, color, face };
const CHOSEN = 'spyglass.collection';
const context = { maxK: 1000 };

const $ = (id) => document.getElementById(id);
let collections = [];
let current = null;
let adminView = null;

function describe(c) {
  return [
    c.encoder === 'none' ? 'no encoder' : `${c.encoder} encoder`,
    `${c.dim}-d`,
    c.metric,
    `${num(c.count, 0)} items`,
    `version ${c.version}`,
  ].join(' · ');
}

function show(name) {
  current?.unmount();
  current = null;
  const view = $('view');
  const chosen = collections.find((c) => c.name === name);
  if (!chosen) {
    $('collection-info').textContent = '';
    view.replaceChildren();
    return;
  }
  sessionStorage.setItem(CHOSEN, name);
  $('collection-info').textContent = describe(chosen);
  const module = VIEWS[chosen.encoder];
  if (!module) {
    const p = document.createElement('p');
    p.textContent = `The web UI has no view for the ${chosen.encoder} encoder; search this collection through the API.`;
    view.replaceChildren(p);
    return;
  }
  current = module.mount(view, chosen, context);
}

async function loadCollections() {
  const select = $('collection');
  try {
    const { data } = await request('/collections');
    collections = data.collections;
  } catch (error) {
    collections = [];
    select.replaceChildren(new Option('(none: see the message above)', ''));
    show(null);
    showError(error);
    return;
  }
  const wanted = select.value || sessionStorage.getItem(CHOSEN);
  select.replaceChildren(...collections.map((c) => new Option(`${c.name} (${c.encoder})`, c.name)));
  if (!collections.length) {
    select.replaceChildren(new Option('(no collections yet)', ''));
    showNotice(
      'No collections yet: create one with `spyglass ingest NAME PATH`, or run `spyglass demo`.',
    );
  }
  const keep = collections.find((c) => c.name === wanted) ?? collections[0];
  if (keep) select.value = keep.name;
  show(keep?.name ?? null);
}

function setUpKey() {
  const input = $('api-key');
  input.value = getKey();
  $('key-form').addEventListener('submit', (event) => {
    event.preventDefault();
    setKey(input.value.trim());
    clearAlert();
    if (input.value.trim()) showNotice('Key in use for this tab.');
    reload();
  });
  $('forget-key').addEventListener('click', () => {
    input.value = '';
    setKey('');
    showNotice('Key forgotten.');
    reload();
  });
}

function reload() {
  if (!$('panel-explore').hidden) loadCollections();
  else showAdmin();
}

function showAdmin() {
  adminView?.unmount();
  adminView = admin.mount($('admin'));
}

function setUpSections() {
  tablist([$('tab-explore'), $('tab-admin')], [$('panel-explore'), $('panel-admin')], (index) => {
    if (index === 1) showAdmin();
    else {
      adminView?.unmount();
      adminView = null;
    }
  });
}

setUpKey();
setUpSections();
$('collection').addEventListener('change', (event) => {
  clearAlert();
  show(event.target.value);
});
$('reload').addEventListener('click', () => {
  clearAlert();
  loadCollections();
});
loadCollections();
window.addEventListener('unhandledrejection', (event) => showError(event.reason));
