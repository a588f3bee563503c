// Conduit dashboard: the eight views, each a function of the state the page holds (built
// with the page's DOM helpers; every value goes in as text). Loaded before app.js.
'use strict';
window.ConduitViews = (env) => {
  const { h, table, pill, card, stat, fmtTime, ago, bytes, pct, num, S, admin, act } = env;
  const body = document.body;
  function witnessSummary() {
    const list = (S.witnesses && S.witnesses.witnesses) || [];
    if (!list.length) return 'none configured';
    const refused = list.filter((w) => w.refused).length;
    const ok = list.filter((w) => w.accepted !== null && !w.last_error).length;
    return refused ? `${refused} REFUSED the last checkpoint` : `${ok} of ${list.length} accepted the last checkpoint`;
  }
  function auditVerified() {
    const v = S.events.find((e) => e.type === 'audit' && e.action === 'audit_verify');
    if (!v) return 'no check failed since this page opened';
    return v.success ? `verified ${ago(v.at)}` : `VERIFICATION FAILED ${ago(v.at)}: ${v.message}`;
  }
  function describe(e) {
    switch (e.type) {
      case 'service': return `${e.name} (${e.domain}) ${e.change}, revision ${e.revision}`;
      case 'health': return `${e.service}: ${e.upstream} ${e.healthy ? 'up' : 'DOWN'} (${e.reason})`;
      case 'certificate': return `${e.name}: ${e.change} · ${e.message}`;
      case 'monitor': return `${e.raised ? 'raised' : 'cleared'} · ${e.target} ${e.subject}: ${e.message}`;
      case 'audit': return `${e.action} by ${e.user}: ${e.message}`;
      case 'alert': return e.message;
      default: return e.message || e.reason || JSON.stringify(e);
    }
  }


  const loading = () => h('p', { class: 'muted' }, 'loading…');
  const svcState = (s) => {
    if (s.healthy === null || s.healthy === undefined) return ['unchecked', 'muted'];
    const up = s.upstreams.filter((u) => u.healthy === true).length;
    if (up === 0) return ['down', 'bad'];
    if (up < s.upstreams.length) return ['degraded', 'warn'];
    return ['up', 'ok'];
  };
  const lifeClass = (left) => (left < 1 / 6 ? 'bad' : left < 1 / 3 ? 'warn' : 'ok');
  const gpus = () => ((S.monitor && S.monitor.samples) || []).filter((x) => x.type === 'gpu');

  function alerts() {
    const out = [];
    for (const s of (S.status ? S.status.services : [])) {
      const [word, cls] = svcState(s);
      if (cls === 'bad' || cls === 'warn') out.push([cls, `${s.name}: ${word}`]);
    }
    for (const l of (S.certs ? S.certs.leaves : [])) {
      if (l.life_left < 1 / 3) out.push([lifeClass(l.life_left), `certificate ${l.name}: ${pct(l.life_left)} of its life left (expires ${fmtTime(l.not_after)})`]);
    }
    if (S.certs && S.certs.ca.issuance !== 'ready') out.push(['bad', `CA: ${S.certs.ca.message || S.certs.ca.issuance}`]);
    const store = S.status && S.status.registry_store;
    if (store && !store.reachable) out.push(['bad', `registry store ${store.url} unreachable since ${fmtTime(store.since)} (${store.reason || 'no answer'}): serving the last-known registry, changes refused`]);
    const raised = new Map();
    for (const e of S.events.slice().reverse()) {
      if (e.type === 'monitor') {
        const key = `${e.target}|${e.subject}`;
        if (e.raised) raised.set(key, e.message); else raised.delete(key);
      }
    }
    for (const m of raised.values()) out.push(['warn', m]);
    return out;
  }

  return {
    dashboard() {
      if (!S.status) return loading();
      const counts = { up: 0, degraded: 0, down: 0, unchecked: 0 };
      for (const s of S.status.services) counts[svcState(s)[0]] += 1;
      const list = alerts();
      const near = (S.certs ? S.certs.leaves : []).filter((l) => l.life_left < 1 / 3).length;
      const g = gpus();
      const util = g.map((x) => num(x.metrics.utilization_ratio)).filter((x) => x !== null);
      const cp = S.checkpoint;
      const sealed = S.audit ? S.audit.sealed : null;
      return h('div', {},
        h('div', { class: 'stats' },
          stat('services up', counts.up, 'ok'), stat('degraded', counts.degraded, counts.degraded ? 'warn' : ''),
          stat('down', counts.down, counts.down ? 'bad' : ''), stat('certificates near expiry', near, near ? 'warn' : ''),
          stat('active alerts', list.length, list.length ? 'bad' : ''),
          stat('GPUs', g.length ? `${g.length} · ${util.length ? pct(util.reduce((a, b) => a + b, 0) / util.length) : '—'} busy` : 'none')),
        h('div', { class: 'grid' },
          card('Active alerts', list.length ? h('ul', { class: 'alerts' }, list.map(([cls, t]) => h('li', { class: cls }, t))) : h('p', { class: 'muted' }, 'none')),
          card('Services', table(['Service', 'State', 'Upstreams'], S.status.services.map((s) => {
            const [word, cls] = svcState(s);
            return h('tr', { 'data-service': s.name }, h('td', {}, s.name), h('td', {}, pill(cls, word)),
              h('td', {}, `${s.upstreams.filter((u) => u.healthy === true).length}/${s.upstreams.length}`));
          }), 'Services and their state')),
          card('Audit chain', h('dl', {},
            h('dt', {}, 'records sealed'), h('dd', { id: 'audit-sealed' }, sealed === null || sealed === undefined ? 'not sealed here' : String(sealed)),
            h('dt', {}, 'last checkpoint'), h('dd', {}, cp ? `#${cp.sequence} · ${fmtTime(cp.created_at)}` : 'none yet'),
            h('dt', {}, 'checked'), h('dd', {}, auditVerified()),
            h('dt', {}, 'witnesses'), h('dd', {}, witnessSummary()))),
          card('GPUs', g.length ? table(['GPU', 'Use', 'VRAM', 'Temp'], g.map((x) => h('tr', {},
            h('td', {}, `${x.target} ${x.metrics.name || x.metrics.index}`), h('td', {}, pct(x.metrics.utilization_ratio)),
            h('td', {}, `${bytes(x.metrics.memory_used_bytes)} / ${bytes(x.metrics.memory_total_bytes)}`),
            h('td', {}, x.metrics.temperature_celsius === undefined ? '—' : `${x.metrics.temperature_celsius} °C`))), 'GPUs') : h('p', { class: 'muted' }, 'no GPU seen'))));
    },

    services() {
      if (!S.status) return loading();
      const q = S.filter.toLowerCase();
      const rows = S.status.services.filter((s) => !q || s.name.includes(q) || s.domain.includes(q)
        || s.upstreams.some((u) => u.endpoint.includes(q))).map((s) => {
        const [word, cls] = svcState(s);
        return h('tr', { 'data-service': s.name },
          h('td', {}, h('button', { type: 'button', class: 'link', onclick: () => act.serviceDetail(s.name) }, s.name)),
          h('td', {}, s.domain), h('td', {}, pill(cls, word)), h('td', {}, s.kind),
          h('td', {}, s.upstreams.map((u) => h('div', { class: 'upstream' }, pill(u.healthy === true ? 'ok' : u.healthy === false ? 'bad' : 'muted', u.healthy === true ? 'up' : u.healthy === false ? 'down' : '—'), ' ', u.endpoint, u.latency_ms ? h('span', { class: 'muted' }, ` ${u.latency_ms.toFixed(1)} ms`) : null))),
          h('td', {}, h('button', { type: 'button', onclick: () => act.editService(s.name), disabled: !admin, title: admin ? null : 'read-only token' }, 'Edit'), ' ',
            h('button', { type: 'button', class: 'danger', onclick: () => act.deregister(s.name), disabled: !admin, title: admin ? null : 'read-only token' }, 'Deregister')));
      });
      return h('div', {},
        h('div', { class: 'toolbar' },
          h('label', { for: 'search', class: 'sr-only' }, 'Search services'),
          h('input', { id: 'search', type: 'search', placeholder: 'Search (press /)', value: S.filter, oninput: (e) => { S.filter = e.target.value; act.render(); } }),
          h('button', { type: 'button', id: 'register-open', onclick: () => act.registerForm(), disabled: !admin, title: admin ? null : 'read-only token: registering needs an admin token' }, 'Register a service')),
        table(['Name', 'Domain', 'State', 'Kind', 'Upstreams', ''], rows, 'Services'));
    },

    dns() {
      if (!S.dns) return loading();
      const res = S.lookup;
      return h('div', {},
        h('p', {}, 'Zone serial ', h('strong', { id: 'dns-serial' }, S.dns.serial === null ? 'no DNS' : String(S.dns.serial))),
        h('form', { class: 'toolbar', id: 'resolve-form', onsubmit: act.resolve },
          h('label', { for: 'resolve-name' }, 'Ask the DNS server'),
          h('input', { id: 'resolve-name', name: 'name', required: true, placeholder: `grafana.${body.dataset.zone}` }),
          h('select', { id: 'resolve-type', name: 'type', 'aria-label': 'Record type' }, h('option', {}, 'A'), h('option', {}, 'AAAA')),
          h('button', { type: 'submit' }, 'Resolve')),
        res ? h('p', { id: 'resolve-answer', role: 'status' }, res.error ? res.error : `${res.name} ${res.type}: ${res.code}${res.addresses.length ? ` → ${res.addresses.join(', ')}` : ''} (asked ${res.server})`) : null,
        table(['Name', 'TTL', 'Type', 'Data'], S.dns.records.map((r) => h('tr', {}, h('td', {}, r.name), h('td', {}, r.ttl), h('td', {}, r.type), h('td', {}, r.data))), 'Records served'));
    },

    tls() {
      if (!S.certs) return loading();
      const c = S.certs;
      const caRow = (label, x) => h('tr', {}, h('th', { scope: 'row' }, label),
        h('td', {}, x ? x.subject : '—'), h('td', {}, x ? fmtTime(x.not_after) : '—'), h('td', { class: 'mono' }, x ? x.sha256_fingerprint : '—'));
      const fp = c.root ? c.root.sha256_fingerprint : '';
      return h('div', {},
        h('p', {}, 'Issuance: ', pill(c.ca.issuance === 'ready' ? 'ok' : c.ca.issuance === 'expiring' ? 'warn' : 'bad', c.ca.issuance), c.ca.message ? ` ${c.ca.message}` : ''),
        table(['', 'Subject', 'Expires', 'SHA-256 fingerprint'], [caRow('Root', c.root), caRow('Intermediate', c.intermediate)], 'Certificate authority'),
        h('p', {}, 'Name constraints: ', c.name_constraints.join(', ') || '—'),
        h('h3', {}, 'Certificates'),
        table(['Name', 'Serial', 'Names', 'Expires', 'Life left', ''], c.leaves.map((l) => h('tr', { 'data-cert': l.name },
          h('td', {}, l.name), h('td', { class: 'mono serial' }, l.serial), h('td', {}, l.names.join(', ')),
          h('td', {}, `${fmtTime(l.not_after)}`),
          h('td', {}, h('span', { class: `meter ${lifeClass(l.life_left)}`, role: 'meter', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': Math.round(l.life_left * 100), 'aria-label': `${l.name}: life left` }, h('span', { style: null, 'data-w': Math.round(l.life_left * 100) })), ` ${pct(l.life_left)}`),
          h('td', {}, l.name.startsWith('@') ? null : [
            h('button', { type: 'button', onclick: () => act.certAction(l.name, 'rotate'), disabled: !admin }, 'Rotate'), ' ',
            h('button', { type: 'button', class: 'danger', onclick: () => act.certAction(l.name, 'revoke'), disabled: !admin }, 'Revoke')]))), 'Leaf certificates'),
        h('p', {}, `Revoked serials (CRL${c.ca.crl_url ? ` at ${c.ca.crl_url}` : ''}): `, c.revoked.length ? c.revoked.join(', ') : 'none'),
        h('h3', {}, 'Trust the root'),
        h('p', {}, 'Check the fingerprint ', h('code', {}, fp), ' before trusting it.'),
        h('dl', { class: 'install' },
          h('dt', {}, 'Debian, Ubuntu'), h('dd', {}, h('code', {}, 'sudo cp conduit-root.pem /usr/local/share/ca-certificates/conduit-root.crt && sudo update-ca-certificates')),
          h('dt', {}, 'RHEL, Fedora'), h('dd', {}, h('code', {}, 'sudo cp conduit-root.pem /etc/pki/ca-trust/source/anchors/ && sudo update-ca-trust')),
          h('dt', {}, 'macOS'), h('dd', {}, h('code', {}, 'sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain conduit-root.pem')),
          h('dt', {}, 'Windows'), h('dd', {}, h('code', {}, 'certutil -addstore -f Root conduit-root.pem')),
          h('dt', {}, 'Firefox, Chromium (NSS)'), h('dd', {}, h('code', {}, 'certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n conduit -i conduit-root.pem'))),
        h('p', { class: 'muted' }, 'conduit-root.pem: ', c.ca.crl_url ? h('code', {}, `curl -o conduit-root.pem ${c.ca.crl_url.replace(/\/ca\/crl\.der$/, '/ca/root.pem')}`) : 'the plain-HTTP listener serves it at /ca/root.pem', ', or DIR/tls/root.pem on the gateway.'));
    },

    servers() {
      if (!S.monitor) return loading();
      const by = (t) => S.monitor.samples.filter((x) => x.type === t);
      const m = (x, k) => x.metrics[k];
      return h('div', {},
        h('div', { class: 'toolbar' }, h('button', { type: 'button', onclick: () => act.refresh('monitor') }, 'Read again')),
        h('h3', {}, 'Hosts'),
        table(['Host', 'CPU', 'Memory', 'Uptime', 'Sampled'], by('host').map((x) => h('tr', {}, h('td', {}, x.target), h('td', {}, pct(m(x, 'cpu_usage_ratio'))),
          h('td', {}, `${bytes(m(x, 'memory_used_bytes'))} / ${bytes(m(x, 'memory_total_bytes'))}`), h('td', {}, typeof m(x, 'uptime_seconds') === 'number' ? `${Math.round(m(x, 'uptime_seconds') / 3600)} h` : '—'), h('td', {}, ago(x.timestamp)))), 'Hosts'),
        h('h3', {}, 'GPUs'),
        table(['Host', 'GPU', 'Use', 'VRAM', 'Temp', 'Power'], by('gpu').map((x) => h('tr', {}, h('td', {}, x.target), h('td', {}, `${m(x, 'index') ?? ''} ${m(x, 'name') ?? ''}`),
          h('td', {}, pct(m(x, 'utilization_ratio'))), h('td', {}, `${bytes(m(x, 'memory_used_bytes'))} / ${bytes(m(x, 'memory_total_bytes'))}`),
          h('td', {}, m(x, 'temperature_celsius') === undefined ? '—' : `${m(x, 'temperature_celsius')} °C`),
          h('td', {}, m(x, 'power_watts') === undefined ? '—' : `${Math.round(m(x, 'power_watts'))} W${m(x, 'power_limit_watts') ? ` / ${Math.round(m(x, 'power_limit_watts'))} W` : ''}`))), 'GPUs'),
        h('h3', {}, 'GPU processes'),
        table(['Host', 'PID', 'Name', 'VRAM'], by('gpu_process').map((x) => h('tr', {}, h('td', {}, x.target), h('td', {}, m(x, 'pid')), h('td', {}, m(x, 'name') ?? ''), h('td', {}, bytes(m(x, 'used_bytes'))))), 'GPU processes'),
        h('h3', {}, 'Containers'),
        table(['Host', 'Name', 'Image', 'State', 'CPU', 'Memory'], by('container').map((x) => h('tr', {}, h('td', {}, x.target), h('td', {}, m(x, 'name') ?? m(x, 'id')), h('td', {}, m(x, 'image') ?? ''),
          h('td', {}, pill(m(x, 'running') ? 'ok' : 'bad', m(x, 'state') ?? (m(x, 'running') ? 'running' : 'stopped'))), h('td', {}, pct(m(x, 'cpu_usage_ratio'))), h('td', {}, bytes(m(x, 'memory_used_bytes'))))), 'Containers'),
        h('h3', {}, 'Disks'),
        table(['Host', 'Mount', 'Used'], by('disk').map((x) => h('tr', {}, h('td', {}, x.target), h('td', {}, m(x, 'mount')), h('td', {}, pct(m(x, 'used_ratio'))))), 'Disks'));
    },

    routing() {
      if (!S.status) return loading();
      const rows = [];
      for (const s of S.status.services.filter((x) => x.routing === 'proxied')) {
        for (const u of s.upstreams) {
          rows.push(h('tr', {}, h('td', {}, s.domain), h('td', {}, u.endpoint),
            h('td', {}, pill(u.healthy === true ? 'ok' : 'bad', u.healthy === true ? 'up' : 'down')),
            h('td', {}, u.in_flight ?? '—'), h('td', {}, u.requests ?? '—'), h('td', {}, u.failures ?? '—'),
            h('td', {}, u.latency_ms ? `${u.latency_ms.toFixed(1)} ms` : '—'),
            h('td', {}, u.engine ? `${u.engine.kind} ${u.engine.ready ? 'ready' : 'not ready'} · load ${u.engine.load.toFixed(1)}${u.engine.kv_cache_use !== null ? ` · KV ${pct(u.engine.kv_cache_use)}` : ''} · ${u.engine.models.map((x) => x.id).join(', ')}` : 'http')));
        }
      }
      return h('div', {},
        h('p', {}, 'Balancing: ', h('strong', {}, S.status.balance === 'p2c' ? 'power of two choices (fewer in flight wins)' : 'round robin'), '. Model servers are routed by model (see Engine).'),
        table(['Route', 'Upstream', 'State', 'In flight', 'Requests', 'Failures', 'Latency', 'Engine'], rows, 'Routes'));
    },

    audit() {
      if (!S.audit) return loading();
      const f = S.auditFilter;
      const first = S.audit.first || 0;
      const sealed = S.audit.sealed;
      const rows = S.audit.events.map((e, i) => [e, first + i]).reverse()
        .filter(([e]) => (!f.action || e.action === f.action) && (!f.user || e.user.includes(f.user)) && (!f.since || e.timestamp >= f.since))
        .slice(0, 300)
        .map(([e, pos]) => h('tr', { 'data-action': e.action },
          h('td', {}, e.timestamp), h('td', {}, e.action), h('td', {}, pill(e.status === 'success' ? 'ok' : 'bad', e.status)),
          h('td', { class: 'user' }, e.user), h('td', {}, e.message),
          h('td', {}, sealed === null || sealed === undefined ? '—' : pos < sealed ? pill('ok', `sealed #${pos}`) : pill('warn', 'pending'))));
      const actions = [...new Set(S.audit.events.map((e) => e.action))].sort();
      const cp = S.checkpoint;
      const set = (k) => (e) => { S.auditFilter[k] = e.target.value; act.render(); };
      return h('div', {},
        h('p', {}, `${S.audit.total} records in the log; `, sealed === null || sealed === undefined ? 'not sealed here.' : `${sealed} sealed. `,
          cp ? `Last checkpoint #${cp.sequence} at ${fmtTime(cp.created_at)}, head ${cp.head_hash.slice(0, 16)}…; ` : 'No checkpoint yet; ', auditVerified()),
        h('div', { class: 'toolbar' },
          h('label', { for: 'audit-action' }, 'Action'),
          h('select', { id: 'audit-action', onchange: set('action') }, h('option', { value: '' }, 'any'), actions.map((a) => h('option', { value: a, selected: a === f.action }, a))),
          h('label', { for: 'audit-user' }, 'User'), h('input', { id: 'audit-user', value: f.user, oninput: set('user') }),
          h('label', { for: 'audit-since' }, 'Since'), h('input', { id: 'audit-since', placeholder: 'YYYY-MM-DDTHH:MM:SSZ', value: f.since, oninput: set('since') })),
        h('h3', {}, 'Witnesses'),
        table(['Witness', 'Accepted', 'Last offer', 'State'], ((S.witnesses && S.witnesses.witnesses) || []).map((w) => h('tr', {},
          h('td', {}, w.url), h('td', {}, w.accepted === null ? '—' : `#${w.accepted}`), h('td', {}, w.last_attempt ? ago(w.last_attempt) : 'not yet'),
          h('td', {}, w.refused ? pill('bad', `REFUSED: ${w.last_error}`) : w.last_error ? pill('warn', w.last_error) : w.accepted === null ? pill('muted', 'waiting') : pill('ok', 'accepted')))), 'Witnesses'),
        h('h3', {}, 'Records'),
        table(['Time', 'Action', 'Outcome', 'User', 'Message', 'Seal'], rows, 'Audit records'));
    },

    events() {
      return h('div', {},
        h('p', { class: 'muted' }, 'The gateway\'s live events, newest first (health, services, certificates, monitor alerts, audit, access).'),
        h('ol', { class: 'events', id: 'event-list' }, S.events.slice(0, 200).map((e) => h('li', { class: e.type },
          h('time', { datetime: e.at }, fmtTime(e.at)), ' ', pill('muted', e.type), ' ', describe(e)))));
    },
  };

};
