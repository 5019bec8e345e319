// The console's logic, apart from the page: what state a link or site is in for a slice,
// how it is drawn, where each site goes on the map, what a province filter keeps, and a
// hint in words. Pure functions over the API's JSON, unit-tested by vitest (logic.test.js).
import words from './hint_words.json';

export const ROLES = ['core', 'province', 'city', 'county']; // centre outwards
export const STATES = ['loss', 'delay', 'no-data', 'ok']; // worst first

// Colour plus a line style and a text mark, so no state is told by colour alone.
export const STATE_STYLE = {
  ok: { colour: '#2e9d4a', line: 'solid', mark: '✓', shape: 'ellipse' },
  delay: { colour: '#d08a00', line: 'dashed', mark: '◷', shape: 'diamond' },
  loss: { colour: '#d0312d', line: 'dotted', mark: '✗', shape: 'octagon' },
  'no-data': { colour: '#8a8f98', line: 'solid', mark: '?', shape: 'round-rectangle' },
};

export function styleFor(state) {
  const style = STATE_STYLE[state];
  if (!style) throw new Error(`unknown state ${state}`);
  return style;
}

export function linkId(a, b) {
  return a < b ? `${a}~${b}` : `${b}~${a}`;
}

function bound(path, objective) {
  const found = (path.verdict?.objectives ?? []).find((o) => o.name === objective);
  return found ? found.bound : null;
}

// One path's newest window against its slice's bounds: loss, delay, ok, or no-data.
export function pathState(path) {
  const latest = path.latest;
  if (!latest || !latest.sent) return 'no-data';
  const lossBound = bound(path, 'two-way-packet-loss');
  if (latest.received === 0 || (lossBound !== null && latest.loss_ratio > lossBound)) return 'loss';
  const delayBound = bound(path, 'two-way-delay-percentile');
  if (delayBound !== null && latest.rtt_p99_s !== null && latest.rtt_p99_s > delayBound) return 'delay';
  return 'ok';
}

// A part's state from the paths over it: loss (or delay) when at least LOSSY_SHARE of the
// paths over it with data show it. Most paths over a faulty part do; one good path over it
// (a window without a lost probe, likely at a few percent of loss) does not clear it, and a
// fault elsewhere that a minority of its paths cross does not paint it.
export const LOSSY_SHARE = 0.75;

export function partState(paths) {
  const states = paths.map(pathState).filter((s) => s !== 'no-data');
  if (states.length === 0) return 'no-data';
  const share = (wanted) => states.filter((s) => wanted.includes(s)).length / states.length;
  if (share(['loss']) >= LOSSY_SHARE) return 'loss';
  if (share(['loss', 'delay']) >= LOSSY_SHARE) return 'delay';
  return 'ok';
}

// How old the newest window is, in seconds, when older than STALE_WINDOWS windows (the agents
// or the intake stopped while the analyzer still answers); null while fresh or without windows.
export const STALE_WINDOWS = 5;

export function staleFor(paths, nowMs) {
  let newest = 0;
  let windowMs = 1000;
  for (const p of paths) {
    if (p.latest && p.latest.end_ns > newest) {
      newest = p.latest.end_ns;
      windowMs = Math.max(1000, (p.latest.end_ns - p.latest.start_ns) / 1e6);
    }
  }
  const age = nowMs - newest / 1e6;
  return newest && age > STALE_WINDOWS * windowMs ? Math.round(age / 1000) : null;
}

// Every link's and site's state in `slice`: {links: {id: state}, nodes: {id: state}}.
// A link's paths are the traced (source, target) pairs over it, in any slice (routes do not
// depend on the slice), judged by the selected slice's windows.
export function paint(map, paths, slice) {
  const bySourceTarget = new Map();
  for (const p of paths) {
    if (p.path.slice !== slice) continue;
    const key = `${p.path.source}>${p.path.target}`;
    if (!bySourceTarget.has(key)) bySourceTarget.set(key, []);
    bySourceTarget.get(key).push(p);
  }
  const links = {};
  for (const link of map.links) {
    const pairs = new Set(link.paths.map((u) => `${u.source}>${u.target}`));
    links[linkId(link.a, link.b)] = partState([...pairs].flatMap((k) => bySourceTarget.get(k) ?? []));
  }
  // A site's paths: those over its links (a router's) and those it probes or answers.
  const through = new Map(map.nodes.map((n) => [n.id, new Set()]));
  for (const link of map.links) {
    for (const u of link.paths) {
      through.get(link.a)?.add(`${u.source}>${u.target}`);
      through.get(link.b)?.add(`${u.source}>${u.target}`);
    }
  }
  for (const key of bySourceTarget.keys()) {
    const [source, target] = key.split('>');
    through.get(source)?.add(key);
    through.get(target)?.add(key);
  }
  const nodes = {};
  for (const node of map.nodes) nodes[node.id] = partState([...through.get(node.id)].flatMap((k) => bySourceTarget.get(k) ?? []));
  return { links, nodes };
}

// The map element a hint's suspect names: a link "a>b", a site, or the host or reflector of one.
export function suspectElement(suspect) {
  if (suspect.includes('>')) {
    const [a, b] = suspect.split('>');
    return { kind: 'link', id: linkId(a, b) };
  }
  const colon = suspect.indexOf(':');
  return { kind: 'node', id: colon >= 0 ? suspect.slice(colon + 1) : suspect };
}

// Hint kinds that name a link ("a|b" kinds: either part).
const LINK_KINDS = new Set(['link-loss', 'link-down', 'congestion', 'one-direction']);

// The link a link-kind hint means when its suspects are the two ends of one of `links` and no
// link (the engine "cannot tell apart: city1a, cnty1a"), else null.
function linkBetweenSuspects(hint, links) {
  if (!hint.kind.split('|').some((kind) => LINK_KINDS.has(kind))) return null;
  const elements = hint.suspects.filter((s) => !s.includes(':')).map(suspectElement);
  if (elements.length !== 2 || elements.some((e) => e.kind !== 'node')) return null;
  const id = linkId(elements[0].id, elements[1].id);
  return links.some((link) => linkId(link.a, link.b) === id) ? id : null;
}

// Hints affecting `slice`, by the element they are drawn on: {elementId: [hint, ...]}. A
// link-kind hint whose suspects are the two ends of one of the map's `links` is drawn on that
// link, not on its ends; a probing host or reflector among them still on its site.
export function hintsByElement(hints, slice, links = []) {
  const drawn = {};
  const draw = (id, hint) => (drawn[id] ??= []).includes(hint) || drawn[id].push(hint);
  for (const hint of hints) {
    if (slice && !hint.slices.includes(slice)) continue;
    const link = linkBetweenSuspects(hint, links);
    if (link) draw(link, hint);
    for (const suspect of hint.suspects) {
      if (link && !suspect.includes(':')) continue;
      draw(suspectElement(suspect).id, hint);
    }
  }
  return drawn;
}

// "link a>b", "the probing agent on x", "the reflector of x", "node x": as `xnetmon why` says it.
export function componentWords(name) {
  if (name.startsWith('host:')) return `the probing agent on ${name.slice(5)}`;
  if (name.startsWith('service:')) return `the reflector of ${name.slice(8)}`;
  return name.includes('>') ? `link ${name}` : `node ${name}`;
}

export function clockTime(ns) {
  if (!ns) return '-';
  const d = new Date(ns / 1e6);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}

// "loss on link a>b (confidence 0.90), affecting video, egov, since 10:42:03", as `xnetmon why`.
export function describeHint(hint) {
  const suspects = hint.suspects.map(componentWords);
  const where =
    suspects.length === 1 ? suspects[0] : `one of ${suspects.join(', ')} (the probes cannot tell them apart)`;
  const template = words.kinds[hint.kind] ?? `${hint.kind} at {}`;
  return (
    `${template.replace('{}', where)} (confidence ${hint.confidence.toFixed(2)}), ` +
    `affecting ${hint.slices.join(', ')}, since ${clockTime(hint.first_seen_ns)}`
  );
}

// Each node's rank (ring): its declared role's, else one past its nearest ranked neighbour's.
export function ranks(map) {
  const neighbours = adjacency(map);
  const rank = {};
  const queue = [];
  for (const node of map.nodes) {
    const index = ROLES.indexOf(node.role);
    if (index >= 0) {
      rank[node.id] = index;
      queue.push(node.id);
    }
  }
  if (queue.length === 0 && map.nodes.length) {
    // Nothing declared: the best connected node is the centre.
    const centre = [...map.nodes].sort((x, y) => neighbours.get(y.id).length - neighbours.get(x.id).length || (x.id < y.id ? -1 : 1))[0];
    rank[centre.id] = 0;
    queue.push(centre.id);
  }
  queue.sort((x, y) => rank[x] - rank[y]);
  for (let i = 0; i < queue.length; i++) {
    for (const next of neighbours.get(queue[i])) {
      if (rank[next] === undefined) {
        rank[next] = rank[queue[i]] + 1;
        queue.push(next);
      }
    }
  }
  const outer = Math.max(ROLES.length, ...Object.values(rank).map((r) => r + 1));
  for (const node of map.nodes) rank[node.id] ??= outer;
  return rank;
}

function adjacency(map) {
  const neighbours = new Map(map.nodes.map((n) => [n.id, []]));
  for (const link of map.links) {
    neighbours.get(link.a)?.push(link.b);
    neighbours.get(link.b)?.push(link.a);
  }
  for (const list of neighbours.values()) list.sort();
  return neighbours;
}

// Each node's parent: its neighbour one ring in over the cheapest declared link (the primary
// uplink), then first by name: a tree over the rings that does not move with the traffic.
export function parents(map, rank = ranks(map)) {
  const neighbours = adjacency(map);
  const cost = new Map(map.links.map((l) => [linkId(l.a, l.b), l.cost ?? Infinity]));
  const parent = {};
  for (const node of map.nodes) {
    const up = neighbours
      .get(node.id)
      .filter((n) => rank[n] === rank[node.id] - 1)
      .sort((x, y) => cost.get(linkId(node.id, x)) - cost.get(linkId(node.id, y)) || (x < y ? -1 : 1));
    parent[node.id] = up.length ? up[0] : null;
  }
  return parent;
}

// Positions by role: the core in the centre, each ring one role further out, every subtree in
// its own sector (sized by its leaves) under its parent. Deterministic: the same map is drawn
// the same on every visit.
export function layoutByRole(map, ringGap = 160) {
  const rank = ranks(map);
  const parent = parents(map, rank);
  const children = new Map(map.nodes.map((n) => [n.id, []]));
  const roots = [];
  for (const node of [...map.nodes].sort((x, y) => (x.id < y.id ? -1 : 1))) {
    const up = parent[node.id];
    if (up) children.get(up).push(node.id);
    else roots.push(node.id);
  }
  const leaves = {};
  const countLeaves = (id) => (leaves[id] = children.get(id).reduce((sum, c) => sum + countLeaves(c), 0) || 1);
  roots.forEach(countLeaves);
  const positions = {};
  const place = (id, from, to) => {
    const r = rank[id] * ringGap;
    const angle = (from + to) / 2;
    // Several cores share the centre on a small ring of their own.
    const radius = rank[id] === 0 ? (roots.length > 1 ? ringGap / 2 : 0) : r;
    positions[id] = { x: radius * Math.cos(angle), y: radius * Math.sin(angle) };
    let start = from;
    for (const child of children.get(id)) {
      const span = ((to - from) * leaves[child]) / leaves[id];
      place(child, start, start + span);
      start += span;
    }
  };
  const total = roots.reduce((sum, r) => sum + leaves[r], 0);
  let start = -Math.PI / 2;
  for (const root of roots) {
    const span = (2 * Math.PI * leaves[root]) / total;
    place(root, start, start + span);
    start += span;
  }
  return positions;
}

// The part of the map under one province: the province, everything whose chain of parents
// reaches it, the core, and the links among them. '' keeps the whole map.
export function filterByProvince(map, province) {
  if (!province) return map;
  const rank = ranks(map);
  const parent = parents(map, rank);
  const keep = new Set();
  for (const node of map.nodes) {
    let at = node.id;
    while (at && at !== province) at = parent[at];
    if (at === province || rank[node.id] === 0) keep.add(node.id);
  }
  return {
    ...map,
    nodes: map.nodes.filter((n) => keep.has(n.id)),
    links: map.links.filter((l) => keep.has(l.a) && keep.has(l.b)),
  };
}

// Paths of `paths` that cross the element (a link id or a site), in `slice`.
export function pathsThrough(map, paths, elementId, slice) {
  const pairs = new Set();
  const link = map.links.find((l) => linkId(l.a, l.b) === elementId);
  if (link) link.paths.forEach((u) => pairs.add(`${u.source}>${u.target}`));
  return paths.filter(
    (p) =>
      p.path.slice === slice &&
      (pairs.has(`${p.path.source}>${p.path.target}`) || (!link && (p.path.source === elementId || p.path.target === elementId))),
  );
}

// The hop list a traced path crossed (GET /map's routes; * for a silent hop), else [].
export function hopList(map, source, target, slice) {
  const routes = (map.routes ?? []).filter((r) => r.source === source && r.target === target);
  return (routes.find((r) => r.slice === slice) ?? routes[0])?.hops ?? [];
}

// The read token (`--read-token-file`) as the page keeps it: asked once when a read answers 401,
// kept for the tab (sessionStorage; memory alone where storage is off), sent on every GET and
// never written into the page.
export const READ_TOKEN_KEY = 'xnetmon-read-token';

export function readTokenKeeper(storage) {
  let token = null;
  try {
    token = storage?.getItem(READ_TOKEN_KEY) || null;
  } catch {
    // storage refused (a locked-down browser): the token lives in memory only
  }
  return {
    get: () => token,
    set(value) {
      token = value || null;
      try {
        if (token) storage?.setItem(READ_TOKEN_KEY, token);
        else storage?.removeItem(READ_TOKEN_KEY);
      } catch {
        // as above: memory only
      }
    },
  };
}

// The headers of every read: the bearer token once there is one.
export function readHeaders(token) {
  return token ? { Accept: 'application/json', Authorization: `Bearer ${token}` } : { Accept: 'application/json' };
}

// What a read's status says of the read token: 'ok', 'needed' (401, none sent) or 'wrong'
// (401 for the one sent).
export function readAccess(status, sentToken) {
  if (status !== 401) return 'ok';
  return sentToken ? 'wrong' : 'needed';
}

// An on-demand probe's result as the form shows it, as `xnetmon probe` prints it: a trace's
// report hop by hop as mtr prints it, a stamp or icmp (ping) summary as the command's summary
// lines (the API answers the summary only: no replies, no elapsed time), anything else as JSON.
export function probeResultText(result, kind) {
  const trace = result?.trace;
  if (trace) return traceText(trace);
  const summary = result?.summary;
  if (summary && kind === 'icmp') return pingSummaryText(summary);
  if (summary && kind === 'stamp') return stampSummaryText(summary);
  return JSON.stringify(result, null, 2);
}

// As xnetmon.commands.common.milliseconds: "-" for none, else three decimals.
const milliseconds = (ns) => (ns === null || ns === undefined ? '-' : (ns / 1e6).toFixed(3));
// As Python's "{:g}": six significant digits, no trailing zeros.
const general = (x) => String(Number(x.toPrecision(6)));

function pingSummaryText(s) {
  const extras = (s.duplicates ? `, +${s.duplicates} duplicates` : '') + (s.errors ? `, +${s.errors} errors` : '');
  return [
    `--- ${s.target} ping statistics ---`,
    `${s.sent} packets transmitted, ${s.received} received${extras}, ${general(s.loss_ratio * 100)}% packet loss`,
    ...(s.received ? [`rtt min/avg/max/mdev = ${[s.rtt_min_ns, s.rtt_avg_ns, s.rtt_max_ns, s.rtt_mdev_ns].map(milliseconds).join('/')} ms`] : []),
  ].join('\n');
}

function stampSummaryText(s) {
  const lines = [
    `--- ${s.target} STAMP statistics ---`,
    `${s.sent} sent, ${s.received} received, ${(s.loss_ratio * 100).toFixed(1)}% loss ` +
      `(forward ${s.lost_forward}, reverse ${s.lost_reverse}, unknown ${s.lost_unknown}), ` +
      `${s.duplicates} duplicates, ${s.reordered} reordered`,
  ];
  if (s.received) {
    const rtts = [s.rtt_min_ns, s.rtt_avg_ns, s.rtt_p50_ns, s.rtt_p99_ns, s.rtt_max_ns].map(milliseconds);
    lines.push(
      `rtt min/avg/p50/p99/max = ${rtts.join('/')} ms`,
      `jitter (IPDV, RFC 3393) mean/max = ${milliseconds(s.ipdv_mean_abs_ns)}/${milliseconds(s.ipdv_max_abs_ns)} ms, ` +
        `PDV p99 (RFC 5481) = ${milliseconds(s.pdv_p99_ns)} ms`,
    );
  }
  return lines.join('\n');
}

function traceText(trace) {
  const ms = (ns) => (ns === null || ns === undefined ? '-' : (ns / 1e6).toFixed(1));
  return [
    `trace ${trace.target} (${trace.address}), slice ${trace.slice} (DSCP ${trace.dscp}), ${trace.rounds} rounds`,
    'hop  address                                  loss%   sent   avg ms  best ms  worst ms',
    ...trace.report.map((row) =>
      [
        `${String(row.hop).padStart(3)}.`,
        (row.address ?? '???').padEnd(40),
        (row.loss_ratio * 100).toFixed(1).padStart(5),
        String(row.sent).padStart(6),
        ms(row.avg_ns).padStart(8),
        ms(row.best_ns).padStart(8),
        ms(row.worst_ns).padStart(9),
      ].join(' '),
    ),
    trace.path?.reached ? 'destination reached' : 'destination not reached',
  ].join('\n');
}
