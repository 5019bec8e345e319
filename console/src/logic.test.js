import { describe, expect, it } from 'vitest';
import {
  READ_TOKEN_KEY, STATE_STYLE, describeHint, filterByProvince, hintsByElement, hopList, layoutByRole, linkId, paint,
  partState, parents, pathState, pathsThrough, probeResultText, ranks, readAccess, readHeaders, readTokenKeeper,
  staleFor, styleFor, suspectElement,
} from './logic.js';

const objectives = [
  { name: 'two-way-packet-loss', bound: 0.001, observed: 0, met: true },
  { name: 'two-way-delay-percentile', bound: 0.15, percentile: 99, observed: 0.01, met: true },
];
const path = (source, target, { slice = 'video', sent = 10, received = 10, p99 = 0.01 } = {}) => ({
  path: { source, target, slice, kind: 'stamp' },
  verdict: { status: 'ok', objectives },
  latest: { sent, received, loss_ratio: (sent - received) / (sent || 1), rtt_p50_s: p99 / 2, rtt_p99_s: p99, start_ns: 0, end_ns: 1e9 },
});
const use = (source, target) => ({ source, target, slice: 'video', fingerprint: 'f' });
// core - p1 - c1 - k1, core - p2 - c2; p1 - p2 backup
const MAP = {
  nodes: [
    { id: 'core', role: 'core' }, { id: 'p1', role: 'province' }, { id: 'p2', role: 'province' },
    { id: 'c1', role: 'city' }, { id: 'c2', role: 'city' }, { id: 'k1', role: 'county' },
  ],
  links: [
    { a: 'core', b: 'p1', paths: [use('k1', 'core'), use('core', 'k1')] },
    { a: 'core', b: 'p2', paths: [use('c2', 'core')] },
    { a: 'p1', b: 'p2', paths: [] },
    { a: 'c1', b: 'p1', paths: [use('k1', 'core'), use('core', 'k1')] },
    { a: 'c2', b: 'p2', paths: [use('c2', 'core')] },
    { a: 'c1', b: 'k1', paths: [use('k1', 'core'), use('core', 'k1')] },
  ],
  routes: [
    { source: 'k1', target: 'core', slice: 'video', hops: ['k1', 'c1', '*', 'core'] },
    { source: 'k1', target: 'core', slice: 'egov', hops: ['k1', 'c1', 'p1', 'core'] },
  ],
};

describe('state of a path and of a part', () => {
  it('reads loss and delay against the slice bounds, and no data without probes', () => {
    expect(pathState(path('a', 'b'))).toBe('ok');
    expect(pathState(path('a', 'b', { received: 9 }))).toBe('loss');
    expect(pathState(path('a', 'b', { p99: 0.2 }))).toBe('delay');
    expect(pathState(path('a', 'b', { sent: 0, received: 0 }))).toBe('no-data');
    expect(pathState({ ...path('a', 'b'), latest: null })).toBe('no-data');
  });
  it('shows loss when three in four paths over it lose, not for one lossy path among several', () => {
    const lossy = path('a', 'b', { received: 5 });
    expect(partState([lossy, lossy, lossy, path('b', 'a')])).toBe('loss');
    expect(partState([lossy, path('b', 'a'), path('c', 'a'), path('d', 'a')])).toBe('ok');
    const slow = path('b', 'a', { p99: 1 });
    expect(partState([lossy, lossy, slow, slow])).toBe('delay');
    expect(partState([lossy, lossy, path('b', 'a'), path('b', 'a')])).toBe('ok');
    expect(partState([])).toBe('no-data');
  });
});

describe('state to style', () => {
  it('every state has a colour, a line style and a text mark, all different', () => {
    for (const key of ['colour', 'line', 'mark', 'shape']) {
      const values = Object.values(STATE_STYLE).map((s) => s[key]);
      if (key !== 'line') expect(new Set(values).size).toBe(values.length);
    }
    expect(styleFor('loss').mark).toBe('✗');
    expect(() => styleFor('bogus')).toThrow(/unknown state bogus/);
  });
});

describe('painting a slice on the map', () => {
  it('marks the links of lossy paths, leaves untraced links without data and ignores other slices', () => {
    const paths = [path('k1', 'core', { received: 6 }), path('core', 'k1', { received: 7 }), path('c2', 'core'), path('k1', 'core', { slice: 'egov' })];
    const painted = paint(MAP, paths, 'video');
    expect(painted.links[linkId('c1', 'k1')]).toBe('loss');
    expect(painted.links[linkId('core', 'p2')]).toBe('ok');
    expect(painted.links[linkId('p1', 'p2')]).toBe('no-data');
    expect(painted.nodes.k1).toBe('loss');
    expect(painted.nodes.c1).toBe('loss'); // a router: the paths over its links
    expect(painted.nodes.p2).toBe('ok');
    expect(paint(MAP, paths, 'egov').links[linkId('c1', 'k1')]).toBe('ok');
  });
});

describe('hints on the map', () => {
  const hint = { kind: 'link-loss', suspects: ['c1>k1', 'host:k1'], slices: ['video'], confidence: 0.9, evidence: ['e'], first_seen_ns: 0 };
  it('a link suspect is drawn on the undirected link, a host or service on its site', () => {
    expect(suspectElement('k1>c1')).toEqual({ kind: 'link', id: linkId('c1', 'k1') });
    expect(suspectElement('service:core')).toEqual({ kind: 'node', id: 'core' });
    const drawn = hintsByElement([hint], 'video');
    expect(drawn[linkId('c1', 'k1')]).toEqual([hint]);
    expect(drawn.k1).toEqual([hint]);
    expect(hintsByElement([hint], 'egov')).toEqual({});
  });
  it('a link-kind hint on the two ends of one link is drawn on that link', () => {
    const ends = { ...hint, suspects: ['c1', 'k1'] }; // "cannot tell apart: c1, k1"
    expect(hintsByElement([ends], 'video', MAP.links)).toEqual({ [linkId('c1', 'k1')]: [ends] });
    const withHost = { ...ends, kind: 'congestion|slice-isolation', suspects: ['k1', 'c1', 'host:k1'] };
    expect(hintsByElement([withHost], 'video', MAP.links)).toEqual({ [linkId('c1', 'k1')]: [withHost], k1: [withHost] });
    // A node's kind, two sites with no link between them, or no map: on the sites.
    const nodes = { ...ends, kind: 'node-loss' };
    expect(Object.keys(hintsByElement([nodes], 'video', MAP.links)).sort()).toEqual(['c1', 'k1']);
    const apart = { ...ends, suspects: ['core', 'k1'] };
    expect(Object.keys(hintsByElement([apart], 'video', MAP.links)).sort()).toEqual(['core', 'k1']);
    expect(Object.keys(hintsByElement([ends], 'video')).sort()).toEqual(['c1', 'k1']);
  });
  it('is worded as `xnetmon why` words it', () => {
    const one = { ...hint, suspects: ['prov2>city2a'], slices: ['video', 'egov'], first_seen_ns: 0 };
    expect(describeHint(one)).toBe('loss on link prov2>city2a (confidence 0.90), affecting video, egov, since -');
    expect(describeHint({ ...hint, kind: 'probe-host', suspects: ['host:a', 'b'] })).toMatch(
      /^trouble of one of the probing agent on a, node b \(the probes cannot tell them apart\)/,
    );
  });
});

describe('layout by role', () => {
  it('puts the core in the centre and each role one ring further out', () => {
    const positions = layoutByRole(MAP, 100);
    const radius = (id) => Math.round(Math.hypot(positions[id].x, positions[id].y));
    expect(radius('core')).toBe(0);
    expect([radius('p1'), radius('p2'), radius('c1'), radius('k1')]).toEqual([100, 100, 200, 300]);
  });
  it('puts several cores on a small ring of their own in the centre', () => {
    const twoCores = { nodes: [{ id: 'a', role: 'core' }, { id: 'b', role: 'core' }, { id: 'p', role: 'province' }], links: [{ a: 'a', b: 'b', paths: [] }, { a: 'a', b: 'p', paths: [] }] };
    const positions = layoutByRole(twoCores, 100);
    expect(Math.round(Math.hypot(positions.a.x, positions.a.y))).toBe(50);
    expect(Math.round(Math.hypot(positions.b.x, positions.b.y))).toBe(50);
    expect(positions.a).not.toEqual(positions.b);
    expect(Math.round(Math.hypot(positions.p.x, positions.p.y))).toBe(100);
  });
  it('is the same on every visit, whatever order the nodes come in', () => {
    const shuffled = { ...MAP, nodes: [...MAP.nodes].reverse(), links: [...MAP.links].reverse() };
    expect(layoutByRole(shuffled)).toEqual(layoutByRole(MAP));
  });
  it('hangs a site under its cheapest uplink, whatever the names say', () => {
    const dual = { ...MAP, links: [...MAP.links.map((l) => ({ ...l, cost: 10 })), { a: 'c2', b: 'p1', cost: 40, paths: [] }] };
    expect(parents(dual).c2).toBe('p2');
    expect(parents({ ...dual, links: dual.links.map((l) => (l.b === 'p1' && l.a === 'c2' ? { ...l, cost: 5 } : l)) }).c2).toBe('p1');
  });
  it('ranks undeclared hops one past their nearest declared neighbour', () => {
    const withRouter = { nodes: [...MAP.nodes, { id: 'fd00::9', role: 'router' }], links: [...MAP.links, { a: 'k1', b: 'fd00::9', paths: [] }] };
    expect(ranks(withRouter)['fd00::9']).toBe(4);
  });
});

describe('filtering by province', () => {
  it('keeps the province, what hangs under it and the core', () => {
    const kept = filterByProvince(MAP, 'p1');
    expect(kept.nodes.map((n) => n.id).sort()).toEqual(['c1', 'core', 'k1', 'p1']);
    expect(kept.links.map((l) => linkId(l.a, l.b)).sort()).toEqual([linkId('c1', 'k1'), linkId('c1', 'p1'), linkId('core', 'p1')].sort());
    expect(filterByProvince(MAP, '')).toBe(MAP);
  });
});

describe('paths and hops', () => {
  it('lists the paths over a link or from and to a site, and a traced path hop by hop', () => {
    const paths = [path('k1', 'core'), path('c2', 'core'), path('core', 'k1')];
    expect(pathsThrough(MAP, paths, linkId('core', 'p1'), 'video').map((p) => p.path.source)).toEqual(['k1', 'core']);
    expect(pathsThrough(MAP, paths, 'c2', 'video').length).toBe(1);
    expect(hopList(MAP, 'k1', 'core', 'egov')).toEqual(['k1', 'c1', 'p1', 'core']);
    expect(hopList(MAP, 'k1', 'core', 'video')).toEqual(['k1', 'c1', '*', 'core']);
    expect(hopList(MAP, 'k1', 'core', 'data')).toEqual(['k1', 'c1', '*', 'core']); // another slice's trace
    expect(hopList(MAP, 'c2', 'core', 'video')).toEqual([]);
  });
});

describe('stale data', () => {
  it('says how old the newest window is once it is older than five windows', () => {
    const at = (endS) => ({ ...path('a', 'b'), latest: { ...path('a', 'b').latest, start_ns: (endS - 1) * 1e9, end_ns: endS * 1e9 } });
    expect(staleFor([at(100), at(97)], 104_000)).toBeNull();
    expect(staleFor([at(100), at(97)], 112_000)).toBe(12);
    expect(staleFor([], 112_000)).toBeNull();
  });
});

describe('the read token', () => {
  // sessionStorage's interface over a Map (node has no sessionStorage)
  const storage = () => {
    const kept = new Map();
    return { getItem: (k) => kept.get(k) ?? null, setItem: (k, v) => kept.set(k, String(v)), removeItem: (k) => kept.delete(k), kept };
  };
  it('is asked for when a read answers 401 without one, and said wrong when the one sent is refused', () => {
    expect(readAccess(200, null)).toBe('ok');
    expect(readAccess(503, 'abc')).toBe('ok');
    expect(readAccess(401, null)).toBe('needed');
    expect(readAccess(401, 'abc')).toBe('wrong');
  });
  it('goes as the bearer header on every read once there is one', () => {
    expect(readHeaders(null)).toEqual({ Accept: 'application/json' });
    expect(readHeaders('abc')).toEqual({ Accept: 'application/json', Authorization: 'Bearer abc' });
  });
  it('is kept for the tab and forgotten when cleared', () => {
    const tab = storage();
    readTokenKeeper(tab).set('abc');
    expect(tab.kept.get(READ_TOKEN_KEY)).toBe('abc');
    const reopened = readTokenKeeper(tab); // a reload of the page in the same tab
    expect(reopened.get()).toBe('abc');
    reopened.set('');
    expect(reopened.get()).toBeNull();
    expect(tab.kept.has(READ_TOKEN_KEY)).toBe(false);
  });
  it('lives in memory where the browser refuses storage', () => {
    const refusing = { getItem: () => { throw new Error('denied'); }, setItem: () => { throw new Error('denied'); }, removeItem: () => {} };
    const keeper = readTokenKeeper(refusing);
    expect(keeper.get()).toBeNull();
    keeper.set('abc');
    expect(keeper.get()).toBe('abc');
    expect(readTokenKeeper(undefined).get()).toBeNull();
  });
});

describe('a probe result', () => {
  it('shows a ping or STAMP summary as the command prints it, anything else as its JSON', () => {
    const rtts = { rtt_min_ns: 1000000, rtt_avg_ns: 1500000, rtt_p50_ns: 1400000, rtt_p99_ns: 2500000, rtt_max_ns: 3000000 };
    const common = { target: 'cnty2b', sent: 3, received: 2, loss_ratio: 1 / 3, duplicates: 0, ...rtts };
    const icmp = { summary: { ...common, errors: 0, rtt_mdev_ns: 250000 } };
    expect(probeResultText(icmp, 'icmp').split('\n')).toEqual([
      '--- cnty2b ping statistics ---',
      '3 packets transmitted, 2 received, 33.3333% packet loss',
      'rtt min/avg/max/mdev = 1.000/1.500/3.000/0.250 ms',
    ]);
    const lossy = { summary: { ...icmp.summary, received: 0, loss_ratio: 1, duplicates: 1, errors: 2 } };
    expect(probeResultText(lossy, 'icmp')).toBe(
      '--- cnty2b ping statistics ---\n3 packets transmitted, 0 received, +1 duplicates, +2 errors, 100% packet loss',
    );
    const losses = { lost_forward: 1, lost_reverse: 0, lost_unknown: 0, reordered: 0 };
    const jitter = { ipdv_mean_abs_ns: 200000, ipdv_max_abs_ns: 500000, pdv_p99_ns: 1500000 };
    const stamp = { summary: { ...common, ...losses, ...jitter } };
    expect(probeResultText(stamp, 'stamp').split('\n')).toEqual([
      '--- cnty2b STAMP statistics ---',
      '3 sent, 2 received, 33.3% loss (forward 1, reverse 0, unknown 0), 0 duplicates, 0 reordered',
      'rtt min/avg/p50/p99/max = 1.000/1.500/1.400/2.500/3.000 ms',
      'jitter (IPDV, RFC 3393) mean/max = 0.200/0.500 ms, PDV p99 (RFC 5481) = 1.500 ms',
    ]);
    const other = { summary: { sent: 3 } };
    expect(JSON.parse(probeResultText(other, 'other'))).toEqual(other);
  });
  it('shows a trace hop by hop with each hop\'s loss', () => {
    const row = (hop, address, received) => ({ hop, address, sent: 10, received, loss_ratio: (10 - received) / 10, avg_ns: 1.5e6, best_ns: 1e6, worst_ns: 3e6 });
    const trace = { target: 'fd00::9', address: 'fd00::9', slice: 'video', dscp: 34, rounds: 10, report: [row(1, 'fd00::1', 10), row(2, null, 0), row(3, 'fd00::9', 7)], path: { reached: true } };
    const lines = probeResultText({ trace }).split('\n');
    expect(lines[0]).toBe('trace fd00::9 (fd00::9), slice video (DSCP 34), 10 rounds');
    expect(lines[2]).toMatch(/^ {2}1\. fd00::1 +0\.0 +10 +1\.5 +1\.0 +3\.0$/);
    expect(lines[3]).toMatch(/^ {2}2\. \?\?\? +100\.0 /);
    expect(lines[4]).toMatch(/^ {2}3\. fd00::9 +30\.0 /);
    expect(lines.at(-1)).toBe('destination reached');
    expect(probeResultText({ trace: { ...trace, report: [], path: { reached: false } } }).split('\n').at(-1)).toBe('destination not reached');
  });
});
