// A WAI-ARIA tablist: one tab stop, arrow keys (and Home/End) move between tabs.

import { h, uid } from './dom.js';

/**
 * Wire up existing elements: `tabs` (buttons in a role="tablist") and their `panels`.
 * `onSelect(index)` is called after a tab is shown. Returns select(index).
 */
export function tablist(tabs, panels, onSelect = () => {}) {
  function select(index, focus = false) {
    tabs.forEach((tab, i) => {
      const on = i === index;
      tab.setAttribute('aria-selected', String(on));
      tab.tabIndex = on ? 0 : -1;
      panels[i].hidden = !on;
    });
    if (focus) tabs[index].focus();
    onSelect(index);
  }
  tabs.forEach((tab, i) => {
    if (!tab.id) tab.id = uid('tab');
    if (!panels[i].id) panels[i].id = uid('panel');
    tab.setAttribute('role', 'tab');
    tab.setAttribute('aria-controls', panels[i].id);
    panels[i].setAttribute('role', 'tabpanel');
    panels[i].setAttribute('aria-labelledby', tab.id);
    panels[i].tabIndex = 0;
    tab.addEventListener('click', () => select(i));
    tab.addEventListener('keydown', (event) => {
      const last = tabs.length - 1;
      const next = {
        ArrowRight: i === last ? 0 : i + 1,
        ArrowLeft: i === 0 ? last : i - 1,
        Home: 0,
        End: last,
      }[event.key];
      if (next === undefined) return;
      event.preventDefault();
      select(next, true);
    });
  });
  select(
    Math.max(
      0,
      tabs.findIndex((t) => t.getAttribute('aria-selected') === 'true'),
    ),
  );
  return select;
}

/** Build a tablist with panels: [{title, panel}] → {element, select}. */
export function makeTabs(label, items, onSelect) {
  const tabs = items.map((item) => h('button', { type: 'button', class: 'tab' }, item.title));
  const list = h('div', { role: 'tablist', 'aria-label': label, class: 'tabs' }, tabs);
  const panels = items.map((item) => item.panel);
  const select = tablist(tabs, panels, onSelect);
  return { element: h('div', { class: 'tabbed' }, list, panels), select };
}
