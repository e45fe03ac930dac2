// The operator's view (admin key): collections, request rate, latency percentiles, 429s,
// 503s and the cache, from GET /status and GET /metrics polled every few seconds.

import { request, requestText } from '../api.js';
import { clearAlert, showError } from '../alerts.js';
import { duration, field, h, num } from '../dom.js';
import { buckets, difference, parse, quantile, sum, sumBy } from '../prometheus.js';

const LATENCY = 'spyglass_http_request_duration_seconds';
const REQUESTS = 'spyglass_http_requests_total';
const QUIET = new Set(['/', '/metrics', '/status', '/livez', '/readyz']);

/** API traffic: not the probes, not this view's own polling, not the UI's files. */
const api = (labels) => !QUIET.has(labels.route) && !(labels.route ?? '').startsWith('/ui');

function seconds(s) {
  return Number.isFinite(s) ? duration(s * 1000) : '–';
}

function uptime(s) {
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const mm = Math.floor((s % 3600) / 60);
  return d ? `${d} d ${hh} h` : hh ? `${hh} h ${mm} min` : `${mm} min ${Math.floor(s % 60)} s`;
}

function stat(label, value, note = '') {
  return h(
    'div',
    { class: 'stat' },
    h('dt', {}, label),
    h('dd', {}, value, note ? h('small', {}, note) : null),
  );
}

function table(caption, head, rows) {
  return h(
    'div',
    { class: 'table-scroll', tabindex: 0, role: 'region', 'aria-label': caption },
    h(
      'table',
      {},
      h('caption', {}, caption),
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          head.map((c) => h('th', { scope: 'col' }, c)),
        ),
      ),
      h(
        'tbody',
        {},
        rows.length
          ? rows.map((r) =>
              h(
                'tr',
                {},
                r.map((c) => h('td', {}, c)),
              ),
            )
          : h('tr', {}, h('td', { colspan: head.length }, 'None')),
      ),
    ),
  );
}

/** The figures of one scrape, and of the interval since the previous one. */
export function figures(samples, previous, elapsedS) {
  const latency = buckets(samples, LATENCY, api);
  const requests = sum(samples, REQUESTS, api);
  const hits = sum(samples, 'spyglass_cache_hits_total');
  const misses = sum(samples, 'spyglass_cache_misses_total');
  const out = {
    requests,
    latency,
    inFlight: Math.max(0, sum(samples, 'spyglass_http_requests_in_flight') - 1), // not this scrape
    limited: sumBy(samples, 'spyglass_http_rate_limited_total', 'route_class'),
    shed: sumBy(samples, 'spyglass_http_shed_total', 'route_class'),
    cacheHits: hits,
    cacheLookups: hits + misses,
    rate: NaN,
    window: 'since start',
    windowLatency: latency,
  };
  if (previous && elapsedS > 0) {
    out.rate = Math.max(0, requests - previous.requests) / elapsedS;
    const recent = difference(latency, previous.latency);
    if (recent.length && recent[recent.length - 1].count > 0) {
      out.windowLatency = recent;
      out.window = `last ${elapsedS < 10 ? elapsedS.toFixed(1) : Math.round(elapsedS)} s`;
    }
  }
  return out;
}

function routeRows(samples) {
  const series = new Map();
  for (const s of samples) {
    if (s.name !== `${LATENCY}_count` || !api(s.labels)) continue;
    const key = `${s.labels.method} ${s.labels.route}`;
    series.set(key, { route: s.labels.route, method: s.labels.method });
  }
  return [...series.values()]
    .map(({ route, method }) => {
      const mine = (l) => l.route === route && l.method === method;
      const b = buckets(samples, LATENCY, mine);
      return [
        h('code', {}, route),
        method,
        String(sum(samples, REQUESTS, mine)),
        seconds(quantile(0.5, b)),
        seconds(quantile(0.95, b)),
        seconds(quantile(0.99, b)),
      ];
    })
    .sort((a, b) => Number(b[2]) - Number(a[2]));
}

function classes(counts) {
  const parts = Object.entries(counts)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${k} ${n}`);
  return parts.length ? parts.join(', ') : '';
}

export function mount(container) {
  const interval = h(
    'select',
    {},
    [
      ['0', 'Off'],
      ['2000', 'every 2 s'],
      ['5000', 'every 5 s'],
      ['10000', 'every 10 s'],
    ].map(([value, label]) => h('option', { value, selected: value === '5000' }, label)),
  );
  const refresh = h('button', { type: 'button' }, 'Refresh now');
  const updated = h('p', { class: 'timing', role: 'status' });
  const summary = h('dl', { class: 'stats', 'aria-label': 'Traffic' });
  const server = h('div', { class: 'server' });
  const collections = h('div', {});
  const routes = h('div', {});
  let previous = null;
  let timer = null;
  let busy = false;

  async function poll() {
    if (busy) return;
    busy = true;
    // One after the other, so that the in-flight gauge holds no request of this view
    // but the scrape itself.
    const [metrics] = await Promise.allSettled([requestText('/metrics')]);
    const [status, mine] = await Promise.allSettled([request('/status'), request('/collections')]);
    busy = false;
    const failed = [metrics, status].find((r) => r.status === 'rejected');
    if (failed) showError(failed.reason);
    else clearAlert();
    if (metrics.status === 'fulfilled') {
      const at = performance.now();
      const samples = parse(metrics.value.text);
      const f = figures(samples, previous?.figures, previous ? (at - previous.at) / 1000 : 0);
      previous = { at, figures: f };
      const lookups = f.cacheLookups;
      summary.replaceChildren(
        stat(
          'Requests/s',
          Number.isFinite(f.rate) ? num(f.rate, 2) : '–',
          Number.isFinite(f.rate) ? '' : ' (after two scrapes)',
        ),
        stat('Latency p50', seconds(quantile(0.5, f.windowLatency)), ` ${f.window}`),
        stat('Latency p95', seconds(quantile(0.95, f.windowLatency)), ` ${f.window}`),
        stat('Latency p99', seconds(quantile(0.99, f.windowLatency)), ` ${f.window}`),
        stat('In flight', num(f.inFlight, 0), ' besides this scrape'),
        stat(
          'Rate limited (429)',
          num(sum(samples, 'spyglass_http_rate_limited_total'), 0),
          ` ${classes(f.limited)}`,
        ),
        stat('Shed (503)', num(sum(samples, 'spyglass_http_shed_total'), 0), ` ${classes(f.shed)}`),
        stat(
          'Cache hit rate',
          lookups ? `${num((100 * f.cacheHits) / lookups, 1)}%` : '–',
          ` of ${lookups} lookups`,
        ),
        stat('API requests', num(f.requests, 0), ' since start'),
      );
      routes.replaceChildren(
        table(
          'Requests by route (since start)',
          ['route', 'method', 'requests', 'p50', 'p95', 'p99'],
          routeRows(samples),
        ),
      );
      updated.textContent = `Updated ${new Date().toLocaleTimeString()} · /metrics round trip ${duration(metrics.value.roundTripMs)}`;
    }
    if (status.status === 'fulfilled') {
      const s = status.value.data;
      const dims = new Map(
        mine.status === 'fulfilled' ? mine.value.data.collections.map((c) => [c.name, c.dim]) : [],
      );
      server.replaceChildren(
        h(
          'dl',
          { class: 'facts' },
          h('dt', {}, 'Version'),
          h('dd', {}, s.version),
          h('dt', {}, 'Uptime'),
          h('dd', {}, uptime(s.uptime_s)),
          h('dt', {}, 'Worker'),
          h('dd', {}, `pid ${s.pid}`),
          h('dt', {}, 'Access'),
          h('dd', {}, s.open ? 'open (no API key exists)' : 'API keys required'),
          h('dt', {}, 'Models loaded'),
          h('dd', {}, s.models.length ? s.models.join(', ') : 'none'),
          ...Object.entries(s.model_failures ?? {}).flatMap(([m, why]) => [
            h('dt', {}, `${m} failed`),
            h('dd', {}, why),
          ]),
        ),
      );
      collections.replaceChildren(
        table(
          'Collections',
          ['name', 'encoder', 'dim', 'items', 'data version', 'index loaded'],
          s.collections.map((c) => [
            c.name,
            c.encoder,
            String(dims.get(c.name) ?? '–'),
            String(c.count),
            String(c.version),
            c.loaded ? 'yes' : 'no',
          ]),
        ),
      );
    }
  }

  function schedule() {
    clearInterval(timer);
    const every = Number(interval.value);
    timer = every
      ? setInterval(() => document.visibilityState === 'visible' && poll(), every)
      : null;
  }

  interval.addEventListener('change', schedule);
  refresh.addEventListener('click', poll);
  container.replaceChildren(
    h('h2', { class: 'view-title' }, 'Server'),
    h('div', { class: 'row controls' }, field('Refresh', interval), refresh),
    updated,
    summary,
    server,
    collections,
    routes,
    h(
      'p',
      { class: 'hint' },
      'Needs a key with the admin scope. Latency and rates count API requests, not probes, /metrics, /status or the UI’s files; with several workers, /metrics sums them all and /status describes the worker that answered.',
    ),
  );
  poll();
  schedule();
  return {
    unmount() {
      clearInterval(timer);
    },
  };
}
