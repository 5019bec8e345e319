// Labels in English and Chinese; slice and site names stay as configured.
export const LABELS = {
  en: {
    title: 'xnetmon operations console', slice: 'Slice', province: 'Province', all: 'all', theme: 'Theme',
    language: '中文 (zh)', dark: 'dark', light: 'light', map: 'Map', parts: 'Links and sites', slices: 'Slices',
    details: 'Details', hints: 'Root-cause hints', evidence: 'Evidence', hops: 'Traced hops', paths: 'Paths through it',
    status: 'status', budget: 'error budget', burn: 'burn rates', objectives: 'Objectives', objective: 'objective',
    bound: 'bound', observed: 'observed', met: 'met', range: 'Range', probe: 'Probe', site: 'from site',
    target: 'target address', kind: 'kind', count: 'probes (trace: rounds)', run: 'Run probe', token: 'Operator token',
    unreachable: 'The analyzer is unreachable: showing the last data received', stale: 'Data is stale: no new window for',
    updated: 'updated', none: 'none', ok: 'ok', loss: 'loss', delay: 'delay', 'no-data': 'no data',
    link: 'link', node: 'site', rtt: 'RTT p50 / p99 (ms)', lossChart: 'loss (%)', choose: 'Select a link, site or hint',
    since: 'since', seconds: 's', ended: 'This hint is no longer active: shown as last seen.',
    readToken: 'Read token', useToken: 'Use token',
    readTokenNeeded: 'This analyzer needs its read token to show its data: enter it below.',
    readTokenWrong: 'The read token was refused (wrong token): enter it again.',
  },
  zh: {
    title: 'xnetmon 运维控制台', slice: '切片', province: '省份', all: '全部', theme: '主题',
    language: 'English (en)', dark: '深色', light: '浅色', map: '拓扑图', parts: '链路与站点', slices: '切片',
    details: '详情', hints: '根因提示', evidence: '证据', hops: '路由跳', paths: '经过的路径',
    status: '状态', budget: '错误预算', burn: '消耗速率', objectives: '目标', objective: '目标',
    bound: '界限', observed: '观测值', met: '达标', range: '时间范围', probe: '探测', site: '源站点',
    target: '目标地址', kind: '类型', count: '探测包数（trace：轮数）', run: '执行探测', token: '运维令牌',
    unreachable: '分析器无法访问：显示最后收到的数据', stale: '数据已过期：无新窗口已',
    updated: '更新于', none: '无', ok: '正常', loss: '丢包', delay: '时延', 'no-data': '无数据',
    link: '链路', node: '站点', rtt: '往返时延 p50 / p99 (毫秒)', lossChart: '丢包率 (%)', choose: '选择链路、站点或提示',
    since: '自', seconds: '秒', ended: '该提示已不再活跃：显示最后一次所见内容。',
    readToken: '读取令牌', useToken: '使用令牌',
    readTokenNeeded: '该分析器需要读取令牌才能显示数据：请在下方输入。',
    readTokenWrong: '读取令牌被拒绝（令牌错误）：请重新输入。',
  },
};

export function labels(language) {
  return LABELS[language] ?? LABELS.en;
}
