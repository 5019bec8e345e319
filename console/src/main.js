// The operations console: polls the analyzer's API, draws the map (Cytoscape.js), the slices,
// the details of what is selected (uPlot charts) and runs on-demand probes. Logic that needs
// no page lives in logic.js.
import cytoscape from 'cytoscape';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { labels } from './i18n.js';
import {
  clockTime, describeHint, filterByProvince, hintsByElement, hopList, layoutByRole, linkId, paint, pathState,
  pathsThrough, probeResultText, ranks, readAccess, readHeaders, readTokenKeeper, staleFor, styleFor, suspectElement,
} from './logic.js';

const params = new URLSearchParams(location.search);
const POLL_MS = Math.max(500, Number(params.get('poll')) || 2000);
const HISTORY_POINTS = 24 * 3600; // per series at most: a day of one-second intervals
const LIST_ALL_UP_TO = 400; // parts listed one by one below the map
const RANGES = { '1h': 3600, '6h': 6 * 3600, '24h': 24 * 3600 };
const API = new URL('..', location.href).pathname; // the analyzer serving /ui/

const state = {
  map: { nodes: [], links: [] }, paths: [], hints: [], slices: [], slice: params.get('slice') || '',
  province: '', selected: null, language: localStorage.getItem('xnetmon-language') || 'en',
  theme: localStorage.getItem('xnetmon-theme') || 'dark', range: '1h', lastOk: null, failure: null,
  sliceDetail: null, sliceHistory: null, history: new Map(), topologyKey: '', access: 'ok',
};
let operatorToken = null; // asked once for probes, kept in memory only, never shown back
const readToken = readTokenKeeper(tabStorage()); // asked once when a read answers 401
let pollTimer = null;
let cy = null;
const timings = { opened: null, filtered: null }; // ms: the page to a drawn map; a province filter
const charts = [];

function tabStorage() {
  try {
    return window.sessionStorage;
  } catch {
    return undefined; // storage off: readTokenKeeper keeps the token in memory
  }
}

const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c);
  return node;
};
const t = (key) => labels(state.language)[key] ?? key;
const fmt = (v, digits = 3) => (v === null || v === undefined ? '-' : Number(v).toFixed(digits));
const ms = (s) => (s === null || s === undefined ? '-' : (s * 1000).toFixed(1));

function shell() {
  document.documentElement.dataset.theme = state.theme;
  document.documentElement.lang = state.language === 'zh' ? 'zh-CN' : 'en';
  $('app').replaceChildren(
    el('header', {},
      el('h1', {}, t('title')),
      el('label', {}, t('slice'), ' ', el('select', { id: 'slice', onchange: (e) => { state.slice = e.target.value; render(); } })),
      el('label', {}, t('province'), ' ', el('select', { id: 'province', onchange: (e) => filterTo(e.target.value) })),
      el('button', { id: 'theme', type: 'button', onclick: toggleTheme }, `${t('theme')}: ${t(state.theme)}`),
      el('button', { id: 'language', type: 'button', onclick: toggleLanguage }, t('language')),
    ),
    el('div', { id: 'banner', role: 'status', 'aria-live': 'polite' }),
    readTokenForm(),
    el('main', {},
      el('section', { id: 'map-section', 'aria-label': t('map') },
        el('div', { id: 'map', role: 'img', 'aria-label': t('map') }),
        el('div', { id: 'legend' }),
        el('h2', {}, t('parts')),
        el('ul', { id: 'parts' })),
      el('aside', {},
        el('section', { id: 'details', 'aria-live': 'polite' }),
        el('section', { id: 'slice-view' }),
        el('section', { id: 'probe' }))),
  );
  cy = null;
  state.topologyKey = '';
  probeForm();
}

// Redraws the map for one province and says how long it took (window.__xnetmon.timings).
function filterTo(province) {
  const started = performance.now();
  state.province = province;
  render();
  cy.one('render', () => (timings.filtered = performance.now() - started)); // drawn, not only built
}

function toggleTheme() {
  state.theme = state.theme === 'dark' ? 'light' : 'dark';
  localStorage.setItem('xnetmon-theme', state.theme);
  shell();
  render();
}

function toggleLanguage() {
  state.language = state.language === 'en' ? 'zh' : 'en';
  localStorage.setItem('xnetmon-language', state.language);
  shell();
  render();
}

// Asked for when a read answers 401: the token goes to readToken, never back into the page.
function readTokenForm() {
  const form = el('form', { id: 'read-token-form', hidden: state.access === 'ok', onsubmit: (e) => {
    e.preventDefault();
    const input = form.querySelector('[name=read-token]');
    readToken.set(input.value.trim());
    input.value = '';
    form.hidden = true;
    poll();
  } },
    el('label', {}, t('readToken'), ' ', el('input', { name: 'read-token', type: 'password', autocomplete: 'off', required: true, 'data-focus-key': 'read-token' })),
    ' ', el('button', { type: 'submit' }, t('useToken')));
  return form;
}

class ReadRefused extends Error {
  constructor(access) {
    super(access);
    this.access = access; // 'needed' or 'wrong' (logic.readAccess)
  }
}

async function get(path) {
  const sent = readToken.get();
  const response = await fetch(API + path, { headers: readHeaders(sent) });
  const access = readAccess(response.status, sent);
  if (access !== 'ok') {
    if (access === 'wrong' && readToken.get() === sent) readToken.set(null); // not one entered since
    throw new ReadRefused(access);
  }
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

async function poll() {
  clearTimeout(pollTimer);
  try {
    const [map, paths, hints, slices] = await Promise.all([
      get('map'), get('paths?limit=100000'), get('hints'), get('slices'),
    ]);
    Object.assign(state, { map, paths: paths.paths, hints, slices, lastOk: Date.now(), failure: null, access: 'ok' });
    if (!state.slice || !slices.some((s) => s.name === state.slice)) state.slice = slices.find((s) => s.paths)?.name ?? slices[0]?.name ?? '';
    state.sliceDetail = state.slice ? await get(`slices/${encodeURIComponent(state.slice)}`) : null;
    state.sliceHistory = state.slice ? await sliceHistory(state.slice, state.range) : null;
    remember();
  } catch (error) {
    if (error instanceof ReadRefused) Object.assign(state, { access: error.access, failure: null });
    else state.failure = String(error.message || error);
  }
  render();
  clearTimeout(pollTimer); // one poll pending at most, also when a token's entry polled at once
  pollTimer = setTimeout(poll, POLL_MS);
}

function push(series, point) {
  if (series.length && series[series.length - 1].t >= point.t) return;
  series.push(point);
  if (series.length > HISTORY_POINTS) series.splice(0, series.length - HISTORY_POINTS);
}

// The analyzer's own history of the slice (GET /slices/NAME/history); null where it keeps none.
async function sliceHistory(name, range) {
  try {
    return await get(`slices/${encodeURIComponent(name)}/history?range=${range}`);
  } catch {
    return null;
  }
}

// Each path's windows as they arrive, since the page opened: the path charts' data.
function remember() {
  for (const p of state.paths) {
    if (!p.latest) continue;
    const key = `${p.path.slice}|${p.path.source}|${p.path.target}|${p.path.kind}`;
    if (!state.history.has(key)) state.history.set(key, []);
    push(state.history.get(key), { t: p.latest.end_ns / 1e9, p50: p.latest.rtt_p50_s, p99: p.latest.rtt_p99_s, loss: p.latest.loss_ratio });
  }
}

// Each poll redraws the lists and panels; the control that had the keyboard focus gets it back
// (by its data-focus-key), so keyboard users are not thrown out once a second.
function render() {
  const focused = document.activeElement?.dataset?.focusKey;
  draw();
  if (focused) [...document.querySelectorAll('[data-focus-key]')].find((e) => e.dataset.focusKey === focused)?.focus();
}

function draw() {
  banner();
  options($('slice'), state.slices.map((s) => [s.name, `${s.name} (${t(s.status) ?? s.status})`]), state.slice);
  const rank = ranks(state.map);
  const provinces = state.map.nodes.filter((n) => rank[n.id] === 1).map((n) => n.id);
  options($('province'), [['', t('all')], ...provinces.map((p) => [p, p])], state.province);
  const shown = filterByProvince(state.map, state.province);
  const painted = paint(shown, state.paths, state.slice);
  const drawn = hintsByElement(state.hints, state.slice, state.map.links);
  // The first map with sites (an empty one is drawn while the page waits for data or a token).
  const first = timings.opened === null && shown.nodes.length;
  drawMap(shown, painted, drawn);
  if (first) cy.one('render', () => (timings.opened ??= performance.now())); // since navigation, drawn
  partsList(shown, painted, drawn);
  legend();
  details();
  sliceView();
}

function options(select, pairs, value) {
  const wanted = JSON.stringify(pairs);
  if (select.dataset.options !== wanted) {
    select.replaceChildren(...pairs.map(([v, text]) => el('option', { value: v }, text)));
    select.dataset.options = wanted;
  }
  select.value = value;
}

function banner() {
  const node = $('banner');
  const stale = state.failure ? null : staleFor(state.paths, Date.now());
  let text = '';
  $('read-token-form').hidden = state.access === 'ok';
  if (state.access === 'needed') text = t('readTokenNeeded');
  else if (state.access === 'wrong') text = t('readTokenWrong');
  else if (state.failure) text = `${t('unreachable')} (${state.failure}).`;
  else if (stale !== null) text = `${t('stale')} ${stale} ${t('seconds')}.`;
  node.textContent = text;
  node.className = text ? 'warn' : '';
  node.hidden = !text;
}

function partLabel(kind, id, st, hints) {
  const style = styleFor(st);
  const name = kind === 'link' ? id.replace('~', ' — ') : id;
  const hinted = hints?.length ? ` ⚠ ${[...new Set(hints.map((h) => h.kind))].join(', ')}` : '';
  return `${style.mark} ${name}: ${t(st)}${hinted}`;
}

// What a site or link shows: colour, shape or line style, and a text mark or the hint's kind.
// A large map labels only what needs a look (loss, delay, hints): thousands of labels would
// cost seconds to measure; the list beside it names the rest.
function quiet(st, hints, large) {
  return large && !hints && (st === 'ok' || st === 'no-data');
}

function nodeLook(n, painted, drawn, large) {
  const st = painted.nodes[n.id];
  const style = styleFor(st);
  const hints = drawn[n.id];
  const label = quiet(st, hints, large) ? '' : `${style.mark} ${n.id}${hints ? ` ⚠ ${hints[0].kind}` : ''}`;
  return { colour: style.colour, shape: style.shape, state: st, label };
}

function linkLook(l, painted, drawn, large) {
  const id = linkId(l.a, l.b);
  const st = painted.links[id];
  const style = styleFor(st);
  const hints = drawn[id];
  const label = hints ? `⚠ ${hints[0].kind}` : st === 'ok' || quiet(st, hints, large) ? '' : style.mark;
  return { colour: style.colour, line: style.line, state: st, label };
}

function drawMap(shown, painted, drawn) {
  const key = JSON.stringify([shown.nodes.map((n) => n.id), shown.links.map((l) => linkId(l.a, l.b))]);
  const large = shown.nodes.length > LIST_ALL_UP_TO;
  if (!cy || state.topologyKey !== key) {
    const positions = layoutByRole(shown);
    const rank = ranks(shown);
    // Every element carries the data its style maps from when it is made.
    const elements = [
      ...shown.nodes.map((n) => ({ group: 'nodes', data: { id: n.id, role: n.role, ...nodeLook(n, painted, drawn, large) }, position: positions[n.id], classes: drawn[n.id] ? 'hinted' : '' })),
      ...shown.links.map((l) => ({ group: 'edges', data: { id: linkId(l.a, l.b), source: l.a, target: l.b, ring: rank[l.a] === rank[l.b] ? 1 : 0, ...linkLook(l, painted, drawn, large) }, classes: drawn[linkId(l.a, l.b)] ? 'hinted' : '' })),
    ];
    cy?.destroy();
    const dark = state.theme === 'dark';
    cy = cytoscape({
      container: $('map'), elements, layout: { name: 'preset' }, wheelSensitivity: 0.3,
      textureOnViewport: large, hideEdgesOnViewport: large, pixelRatio: large ? 1 : 'auto',
      style: [
        { selector: 'node', style: { 'min-zoomed-font-size': 9, label: 'data(label)', 'background-color': 'data(colour)', shape: 'data(shape)', color: dark ? '#e6e6e6' : '#1d1d1f', 'font-size': 11, 'text-valign': 'bottom', 'text-margin-y': 3, width: 18, height: 18 } },
        { selector: 'node[role = "core"]', style: { width: 30, height: 30 } },
        { selector: 'edge', style: { 'min-zoomed-font-size': 9, 'line-color': 'data(colour)', 'line-style': 'data(line)', width: 2.5, label: 'data(label)', 'font-size': 10, color: dark ? '#f0c0c0' : '#7a1010', 'text-rotation': 'autorotate' } },
        // A link within one ring (a backup between provinces) bends, not across the centre's links.
        { selector: 'edge[ring = 1]', style: { 'curve-style': 'unbundled-bezier', 'control-point-distances': 80, 'control-point-weights': 0.5 } },
        { selector: '.hinted', style: { width: 7, 'border-width': 4, 'border-color': '#ff4d4f' } },
        { selector: ':selected', style: { 'overlay-color': '#4d8dff', 'overlay-opacity': 0.25 } },
      ],
    });
    cy.on('tap', 'node, edge', (e) => select({ kind: e.target.isNode() ? 'node' : 'link', id: e.target.id() }));
    state.topologyKey = key;
    window.__xnetmon = { cy, state, timings };
    return;
  }
  cy.batch(() => {
    for (const n of shown.nodes) {
      const node = cy.getElementById(n.id);
      const look = nodeLook(n, painted, drawn, large);
      if (node.data('label') !== look.label || node.data('state') !== look.state) node.data(look);
      node.toggleClass('hinted', Boolean(drawn[n.id]));
    }
    for (const l of shown.links) {
      const edge = cy.getElementById(linkId(l.a, l.b));
      const look = linkLook(l, painted, drawn, large);
      if (edge.data('label') !== look.label || edge.data('state') !== look.state) edge.data(look);
      edge.toggleClass('hinted', Boolean(drawn[linkId(l.a, l.b)]));
    }
  });
}

function partsList(shown, painted, drawn) {
  const items = [
    ...shown.links.map((l) => ['link', linkId(l.a, l.b), painted.links[linkId(l.a, l.b)]]),
    ...shown.nodes.map((n) => ['node', n.id, painted.nodes[n.id]]),
  ];
  // A large map lists what needs a look: loss, delay and hints.
  const shownItems = items.length > LIST_ALL_UP_TO ? items.filter(([, id, st]) => st === 'loss' || st === 'delay' || drawn[id]) : items;
  $('parts').replaceChildren(
    ...shownItems.map(([kind, id, st]) =>
      el('li', {},
        el('button', { type: 'button', class: `part state-${st}`, 'data-kind': kind, 'data-id': id, 'data-focus-key': `part:${id}`, 'data-state': st, 'aria-pressed': String(state.selected?.id === id), onclick: () => select({ kind, id }) },
          partLabel(kind, id, st, drawn[id])))),
  );
}

function legend() {
  $('legend').replaceChildren(
    ...['ok', 'delay', 'loss', 'no-data'].map((st) => el('span', { class: `legend state-${st}` }, `${styleFor(st).mark} ${t(st)}`)),
    el('span', { class: 'legend hinted-legend' }, `⚠ ${t('hints')}`),
  );
}

function select(what) {
  state.selected = what;
  cy?.elements().unselect();
  if (what.kind !== 'hint') cy?.getElementById(what.id).select();
  render();
}

function details() {
  charts.splice(0).forEach((c) => c.destroy());
  const box = $('details');
  const chosen = state.selected;
  if (!chosen) {
    box.replaceChildren(el('h2', {}, t('details')), el('p', {}, t('choose')), hintList(state.hints.filter((h) => h.slices.includes(state.slice))));
    return;
  }
  if (chosen.kind === 'hint') {
    // A hint that has since cleared stays on screen as it was last seen, and says so.
    const current = state.hints.find((h) => hintKey(h) === chosen.id);
    box.replaceChildren(el('h2', {}, t('evidence')), ...(current ? [] : [el('p', { class: 'ended' }, t('ended'))]), hintView(current ?? chosen.hint));
    return;
  }
  const painted = paint(state.map, state.paths, state.slice);
  const st = (chosen.kind === 'link' ? painted.links : painted.nodes)[chosen.id] ?? 'no-data';
  const through = pathsThrough(state.map, state.paths, chosen.id, state.slice);
  const hints = (hintsByElement(state.hints, state.slice, state.map.links)[chosen.id] ?? []);
  box.replaceChildren(
    el('h2', {}, `${t(chosen.kind)} ${chosen.id.replace('~', ' — ')}`),
    el('p', { id: 'selected-state', 'data-state': st }, `${styleFor(st).mark} ${t('status')}: ${t(st)} (${state.slice})`),
    hintList(hints),
    el('h3', {}, t('paths')),
    pathTable(through),
    chart(through, 'rtt'),
    chart(through, 'loss'),
  );
}

function hintKey(hint) {
  return `${hint.kind}|${hint.suspects.join(',')}|${hint.first_seen_ns}`;
}

function hintList(hints) {
  return el('div', { id: 'hint-list' },
    el('h3', {}, t('hints')),
    hints.length
      ? el('ul', {}, ...hints.map((h) => el('li', {}, el('button', { type: 'button', class: 'hint', 'data-kind': h.kind, 'data-focus-key': `hint:${hintKey(h)}`, onclick: () => select({ kind: 'hint', id: hintKey(h), hint: h }) }, `⚠ ${describeHint(h)}`))))
      : el('p', {}, t('none')));
}

function hintView(hint) {
  const paths = hint.suspects.flatMap((s) => pathsThrough(state.map, state.paths, suspectElement(s).id, state.slice));
  return el('div', { id: 'hint-evidence' },
    el('p', { class: 'most-likely' }, `Most likely: ${describeHint(hint)}.`),
    el('ul', {}, ...hint.evidence.map((line) => el('li', { class: 'evidence' }, `Evidence: ${line}`))),
    el('p', {}, ...hint.suspects.map((s) => el('button', { type: 'button', 'data-focus-key': `suspect:${s}`, onclick: () => select(suspectElement(s)) }, s))),
    el('h3', {}, t('paths')),
    pathTable([...new Set(paths)]));
}

function pathTable(paths) {
  if (!paths.length) return el('p', {}, t('none'));
  return el('table', { class: 'paths' },
    el('thead', {}, el('tr', {}, ...['path', t('status'), 'loss', 'p50 ms', 'p99 ms', t('hops')].map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, ...paths.map((p) => {
      const st = pathState(p);
      return el('tr', {},
        el('td', {}, `${p.path.source} → ${p.path.target} (${p.path.kind})`),
        el('td', { class: `state-${st}` }, `${styleFor(st).mark} ${t(st)} / ${p.verdict.status}`),
        el('td', {}, p.latest ? `${p.latest.sent - p.latest.received}/${p.latest.sent}` : '-'),
        el('td', {}, ms(p.latest?.rtt_p50_s)), el('td', {}, ms(p.latest?.rtt_p99_s)),
        el('td', { class: 'hops' }, hopList(state.map, p.path.source, p.path.target, p.path.slice).join(' › ') || '-'));
    })));
}

function chart(paths, what) {
  const box = el('div', { class: 'chart', 'aria-label': what === 'rtt' ? t('rtt') : t('lossChart') });
  const chosen = paths.slice(0, 6);
  const series = chosen.map((p) => state.history.get(`${p.path.slice}|${p.path.source}|${p.path.target}|${p.path.kind}`) ?? []);
  const times = [...new Set(series.flatMap((s) => s.map((x) => x.t)))].sort((a, b) => a - b).slice(-RANGES[state.range]);
  if (times.length < 2) return box;
  const at = series.map((s) => new Map(s.map((x) => [x.t, x])));
  const data = [times];
  const lines = [{}];
  chosen.forEach((p, i) => {
    const colour = `hsl(${(i * 67) % 360} 70% 55%)`;
    if (what === 'rtt') {
      data.push(times.map((x) => (at[i].get(x)?.p99 ?? null) * 1000 || null));
      lines.push({ label: `${p.path.source}→${p.path.target} p99`, stroke: colour });
    } else {
      data.push(times.map((x) => (at[i].has(x) ? at[i].get(x).loss * 100 : null)));
      lines.push({ label: `${p.path.source}→${p.path.target}`, stroke: colour });
    }
  });
  queueMicrotask(() => charts.push(new uPlot({ title: what === 'rtt' ? t('rtt') : t('lossChart'), width: 420, height: 160, series: lines }, data, box)));
  return box;
}

function sliceView() {
  const s = state.slices.find((x) => x.name === state.slice);
  const box = $('slice-view');
  if (!s) { box.replaceChildren(el('h2', {}, t('slices'))); return; }
  const points = state.sliceHistory?.name === s.name && state.sliceHistory.range === state.range ? state.sliceHistory.points : [];
  const plot = el('div', { class: 'chart', id: 'slice-chart', 'data-points': points.length });
  if (points.length >= 2) {
    const loss = (p) => p.observed['two-way-packet-loss'] ?? null;
    const series = [{}, { label: t('budget'), stroke: '#4d8dff', scale: 'share' }, { label: `${t('loss')} (${t('observed')})`, stroke: '#d0312d', scale: 'share' }];
    queueMicrotask(() => charts.push(new uPlot({ title: `${t('budget')} / ${t('loss')} (${state.range})`, width: 420, height: 160, series },
      [points.map((p) => p.at_ns / 1e9), points.map((p) => p.error_budget_remaining), points.map(loss)], plot)));
  }
  box.replaceChildren(
    el('h2', {}, `${t('slices')}: ${s.name}`),
    el('p', { id: 'slice-status', 'data-status': s.status }, `${t('status')}: ${s.status} ${t('since')} ${clockTime(s.since_ns)}`),
    el('p', {}, `${t('budget')}: ${fmt(s.error_budget_remaining)}`),
    el('p', {}, `${t('burn')}: ${Object.entries(s.burn_rates).map(([k, v]) => `${k} ${v.toFixed(1)}`).join('  ')}`),
    objectives(),
    el('label', {}, t('range'), ' ', el('select', { id: 'range', 'data-focus-key': 'range', onchange: async (e) => { state.range = e.target.value; state.sliceHistory = await sliceHistory(state.slice, state.range); render(); } }, ...Object.keys(RANGES).map((r) => el('option', { value: r, selected: r === state.range }, r)))),
    plot,
  );
}

// The slice's objectives against their bounds (GET /slices/NAME).
function objectives() {
  const list = state.sliceDetail?.name === state.slice ? state.sliceDetail.verdict.objectives : [];
  if (!list.length) return el('p', {}, `${t('objectives')}: ${t('none')}`);
  return el('table', { class: 'objectives' },
    el('caption', {}, t('objectives')),
    el('thead', {}, el('tr', {}, ...[t('objective'), t('bound'), t('observed'), t('met')].map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, ...list.map((o) => el('tr', {}, el('td', {}, o.name + (o.percentile ? ` p${o.percentile}` : '')), el('td', {}, fmt(o.bound, 4)), el('td', {}, fmt(o.observed, 4)), el('td', {}, o.met === null ? '-' : o.met ? '✓' : '✗')))));
}

function probeForm() {
  const result = el('pre', { id: 'probe-result', 'aria-live': 'polite' });
  const field = (label, input) => el('label', {}, label, ' ', input);
  const form = el('form', { id: 'probe-form', onsubmit: async (e) => {
    e.preventDefault();
    const data = new FormData(form);
    if (!operatorToken) {
      operatorToken = data.get('token') || null;
      form.querySelector('[name=token]').value = '';
    }
    if (!operatorToken) { result.textContent = t('token'); return; }
    const body = { agent: data.get('agent'), target: data.get('target'), slice: data.get('slice') || state.slice, kind: data.get('kind'), count: Number(data.get('count')) };
    result.textContent = '…';
    try {
      const response = await fetch(API + 'probe', { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${operatorToken}` }, body: JSON.stringify(body) });
      const answer = await response.json();
      if (response.status === 401) operatorToken = null; // ask again
      result.textContent = response.ok ? probeResultText(answer.result, body.kind) : `${response.status}: ${answer.detail}`;
    } catch (error) {
      result.textContent = String(error);
    }
    form.querySelector('.token-row').hidden = Boolean(operatorToken);
  } },
    field(t('site'), el('input', { name: 'agent', required: true, size: 10 })),
    field(t('target'), el('input', { name: 'target', required: true, size: 24 })),
    field(t('slice'), el('input', { name: 'slice', size: 10, placeholder: state.slice })),
    field(t('kind'), el('select', { name: 'kind' }, el('option', { value: 'stamp' }, 'stamp'), el('option', { value: 'icmp' }, 'icmp'), el('option', { value: 'trace' }, 'trace'))),
    field(t('count'), el('input', { name: 'count', type: 'number', min: 1, max: 1000, value: 10 })),
    el('div', { class: 'token-row', hidden: Boolean(operatorToken) }, field(t('token'), el('input', { name: 'token', type: 'password', autocomplete: 'off' }))),
    el('button', { type: 'submit' }, t('run')));
  $('probe').replaceChildren(el('h2', {}, t('probe')), form, result);
}

shell();
poll();
