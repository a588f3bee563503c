// Conduit dashboard: reads the admin API on its own origin with the session cookie, and
// follows /v1/events (one EventSource) to stay current without polling. No framework, no
// build step; every value from the API goes into the page as text, never as HTML.
'use strict';
(() => {
  const doc = document;
  const body = doc.body;
  const csrf = doc.querySelector('meta[name="csrf-token"]').content;
  const admin = body.dataset.scope === 'admin';
  const VIEWS = ['dashboard', 'services', 'dns', 'tls', 'servers', 'routing', 'audit', 'events'];
  const S = {
    status: null, services: null, dns: null, certs: null, monitor: null,
    audit: null, checkpoint: null, witnesses: null, events: [], history: new Map(), filter: '',
    lookup: null, auditFilter: { action: '', user: '', since: '' },
  };

  // ---- DOM ----
  function h(tag, attrs, ...kids) {
    const el = doc.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : doc.createTextNode(String(kid)));
    }
    return el;
  }
  const table = (head, rows, label) => h('table', { 'aria-label': label },
    h('thead', {}, h('tr', {}, head.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: head.length, class: 'muted' }, 'nothing yet'))));
  const pill = (cls, text) => h('span', { class: `pill ${cls}` }, text);
  const card = (title, ...kids) => h('div', { class: 'card' }, h('h3', {}, title), kids);
  const stat = (label, value, cls) => h('div', { class: `stat ${cls || ''}` }, h('div', { class: 'value' }, value), h('div', { class: 'label' }, label));
  const fmtTime = (t) => (t ? new Date(t).toLocaleString() : '—');
  const ago = (t) => {
    const s = Math.round((Date.now() - new Date(t).getTime()) / 1000);
    if (Number.isNaN(s)) return '';
    if (s < 60) return `${s}s ago`;
    if (s < 3600) return `${Math.round(s / 60)}m ago`;
    if (s < 86400) return `${Math.round(s / 3600)}h ago`;
    return `${Math.round(s / 86400)}d ago`;
  };
  const bytes = (n) => {
    if (typeof n !== 'number') return '—';
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i += 1; }
    return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
  };
  const pct = (r) => (typeof r === 'number' ? `${Math.round(r * 100)}%` : '—');
  const num = (v) => (typeof v === 'number' ? v : null);

  // ---- API ----
  async function api(method, path, data, headers) {
    const opts = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (method !== 'GET') opts.headers['X-CSRF-Token'] = csrf;
    if (data !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(data);
    }
    Object.assign(opts.headers, headers || {});
    const r = await fetch(path, opts);
    if (r.status === 401) {
      location.assign('/');
      throw new Error('the session ended: log in again');
    }
    const text = await r.text();
    let parsed = null;
    try { parsed = text ? JSON.parse(text) : null; } catch (_) { parsed = null; }
    if (!r.ok) {
      const msg = parsed && parsed.error ? parsed.error.message : `${r.status} ${r.statusText}`;
      const e = new Error(msg);
      e.status = r.status;
      throw e;
    }
    return parsed;
  }

  const loaders = {
    status: () => api('GET', '/v1/status'),
    services: () => api('GET', '/v1/services'),
    dns: () => api('GET', '/v1/dns'),
    certs: () => api('GET', '/v1/certs'),
    monitor: () => api('GET', '/v1/monitor'),
    audit: () => api('GET', '/v1/audit?limit=1000'),
    checkpoint: () => api('GET', '/v1/audit/checkpoint').catch((e) => (e.status === 404 ? null : Promise.reject(e))),
    witnesses: () => api('GET', '/v1/audit/witnesses'),
  };
  const pending = new Set();
  let refreshTimer = null;
  // Re-reads what an event changed (coalesced: a burst of events is one read).
  function refresh(...parts) {
    parts.forEach((p) => pending.add(p));
    if (refreshTimer) return;
    refreshTimer = setTimeout(async () => {
      refreshTimer = null;
      const todo = [...pending];
      pending.clear();
      await load(todo);
    }, 150);
  }
  async function load(parts) {
    const results = await Promise.allSettled(parts.map((p) => loaders[p]()));
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') S[parts[i]] = r.value;
      else showBanner(`Cannot read ${parts[i]}: ${r.reason.message}`);
    });
    render();
  }
  async function loadHistory() {
    try {
      const recent = await api('GET', '/v1/events/recent?limit=500');
      S.events = recent.events.slice().reverse();
      S.history.clear();
      for (const e of recent.events) if (e.type === 'health') remember(e);
    } catch (e) {
      showBanner(`Cannot read the recent events: ${e.message}`);
    }
  }
  function remember(e) {
    const key = `${e.service}|${e.upstream}`;
    const list = S.history.get(key) || [];
    list.unshift({ at: e.at, healthy: e.healthy, reason: e.reason });
    S.history.set(key, list.slice(0, 20));
  }

  // ---- banner, live indicator ----
  const banner = doc.getElementById('banner');
  const live = doc.getElementById('live');
  function showBanner(text) { banner.textContent = text; banner.hidden = false; }
  function hideBanner() { banner.hidden = true; banner.textContent = ''; }
  function setLive(ok, text) { live.textContent = text; live.className = `live ${ok ? 'ok' : 'bad'}`; }

  // ---- the event stream ----
  let source = null;
  function connect() {
    source = new EventSource('/v1/events');
    source.onopen = async () => {
      hideBanner();
      setLive(true, 'live');
      // The stream is open: read the state now, so no change falls between.
      await loadHistory();
      await load(Object.keys(loaders));
    };
    source.onerror = () => {
      setLive(false, 'disconnected');
      showBanner('Lost the connection to the gateway: reconnecting… (what is shown may be out of date)');
    };
    const on = (type, fn) => source.addEventListener(type, (m) => {
      let e;
      try { e = JSON.parse(m.data); } catch (_) { return; }
      S.events.unshift(e);
      if (S.events.length > 500) S.events.length = 500;
      fn(e);
      if (current === 'events') render();
    });
    on('service', () => refresh('status', 'services', 'dns', 'certs'));
    on('health', (e) => {
      remember(e);
      const svc = S.status && S.status.services.find((x) => x.name === e.service);
      const up = svc && svc.upstreams.find((u) => u.endpoint === e.upstream);
      if (up) {
        up.healthy = e.healthy;
        svc.healthy = svc.upstreams.some((u) => u.healthy === true);
        render();
      }
      refresh('status');
    });
    on('certificate', () => refresh('certs', 'status'));
    on('monitor', () => refresh('monitor'));
    on('audit', () => refresh('audit', 'checkpoint', 'witnesses'));
    on('alert', () => {});
    on('access', () => refresh('status'));
    on('registry', () => refresh('status', 'services', 'dns'));
    on('resync', () => { loadHistory().then(() => load(Object.keys(loaders))); });
    on('dropped', () => { showBanner('The gateway dropped this page\'s stream (it fell behind): reconnecting…'); });
  }

  // ---- views ----
  let current = 'dashboard';
  function show(view) {
    if (!VIEWS.includes(view)) view = 'dashboard';
    current = view;
    for (const v of VIEWS) {
      doc.getElementById(`view-${v}`).hidden = v !== view;
      const link = doc.getElementById(`nav-${v}`);
      if (v === view) link.setAttribute('aria-current', 'page'); else link.removeAttribute('aria-current');
    }
    if (view === 'servers') refresh('monitor');
    render();
  }
  function render() {
    const fn = renderers[current];
    const target = doc.querySelector(`#view-${current} .body`);
    if (!fn || !target) return;
    const focused = doc.activeElement && doc.activeElement.id;
    const caret = doc.activeElement && doc.activeElement.selectionStart;
    target.replaceChildren(fn());
    if (focused) {
      const again = doc.getElementById(focused);
      if (again && again !== doc.activeElement) {
        again.focus();
        if (typeof caret === 'number' && again.setSelectionRange) again.setSelectionRange(caret, caret);
      }
    }
  }
  const renderers = window.ConduitViews({
    h, table, pill, card, stat, fmtTime, ago, bytes, pct, num, S, admin,
    act: {
      refresh: (...p) => refresh(...p), serviceDetail: (n) => serviceDetail(n), editService: (n) => editService(n),
      deregister: (n) => deregister(n), registerForm: () => registerForm(), certAction: (n, w) => certAction(n, w),
      resolve: (e) => resolve(e), render: () => render(),
    },
  });

  // ---- panels (details, forms, confirmations) ----
  const panel = doc.getElementById('panel');
  let opener = null;
  function openPanel(title, content) {
    opener = doc.activeElement;
    panel.querySelector('#panel-title').textContent = title;
    panel.querySelector('.panel-body').replaceChildren(content);
    panel.hidden = false;
    const first = panel.querySelector('input, select, button:not([data-close])') || panel.querySelector('[data-close]');
    first.focus();
  }
  function closePanel() {
    if (panel.hidden) return;
    panel.hidden = true;
    if (opener && opener.focus) opener.focus();
  }
  panel.querySelector('[data-close]').addEventListener('click', closePanel);

  function serviceDetail(name) {
    const s = S.status.services.find((x) => x.name === name);
    if (!s) return;
    openPanel(`${s.name} · ${s.domain}`, h('div', {},
      h('p', {}, `Health check ${s.health_path}; certificate until ${fmtTime(s.certificate_not_after)}`),
      s.upstreams.map((u) => {
        const hist = S.history.get(`${s.name}|${u.endpoint}`) || [];
        return h('div', { class: 'card' }, h('h3', {}, u.endpoint, ' ', pill(u.healthy ? 'ok' : 'bad', u.healthy ? 'up' : 'down')),
          h('p', {}, `latency ${u.latency_ms ? `${u.latency_ms.toFixed(1)} ms` : '—'} · in flight ${u.in_flight ?? '—'} · ${u.requests ?? 0} requests, ${u.failures ?? 0} failed`),
          hist.length ? h('ol', { class: 'history' }, hist.map((t) => h('li', {}, `${fmtTime(t.at)} ${t.healthy ? 'up' : 'down'}: ${t.reason}`))) : h('p', { class: 'muted' }, 'no transition since the gateway started'));
      })));
  }

  function serviceForm(existing, submit) {
    const msg = h('p', { class: 'problem', role: 'alert', id: 'form-problem' });
    const f = h('form', { id: 'service-form', onsubmit: async (ev) => {
      ev.preventDefault();
      const data = new FormData(f);
      const spec = {
        name: String(data.get('name')).trim(),
        upstreams: String(data.get('upstreams')).split(/[\s,]+/).filter(Boolean),
      };
      const kind = String(data.get('kind'));
      if (kind !== 'http') spec.kind = kind;
      const path = String(data.get('health') || '').trim();
      if (path) spec.health = { path };
      try {
        await submit(spec);
        closePanel();
      } catch (e) { msg.textContent = e.message; }
    } },
    h('label', { for: 'f-name' }, 'Name'), h('input', { id: 'f-name', name: 'name', required: true, value: existing ? existing.name : '', readonly: !!existing, pattern: '[a-z0-9]([a-z0-9-]*[a-z0-9])?', autocomplete: 'off' }),
    h('label', { for: 'f-upstreams' }, 'Upstreams (HOST:PORT or URL, several separated by spaces)'),
    h('input', { id: 'f-upstreams', name: 'upstreams', required: true, value: existing ? existing.upstreams.join(' ') : '', autocomplete: 'off' }),
    h('label', { for: 'f-kind' }, 'Kind'),
    h('select', { id: 'f-kind', name: 'kind' }, ['http', 'openai', 'vllm', 'ollama'].map((k) => h('option', { value: k, selected: existing && existing.kind === k }, k))),
    h('label', { for: 'f-health' }, 'Health check path (empty: the default)'),
    h('input', { id: 'f-health', name: 'health', value: existing ? existing.health.path : '' }),
    msg, h('button', { type: 'submit', id: 'f-submit' }, existing ? 'Save' : 'Register'));
    return f;
  }
  function registerForm() {
    openPanel('Register a service', serviceForm(null, async (spec) => {
      await api('POST', '/v1/services', spec);
      refresh('status', 'services', 'dns', 'certs');
    }));
  }
  function editService(name) {
    const v = S.services && S.services.services.find((x) => x.name === name);
    if (!v) return;
    openPanel(`Update ${name}`, serviceForm(v, async (spec) => {
      await api('PUT', `/v1/services/${encodeURIComponent(name)}`, spec, { 'If-Match': `"${v.revision}"` });
      refresh('status', 'services', 'dns');
    }));
  }
  function confirmThen(title, text, label, action) {
    const msg = h('p', { class: 'problem', role: 'alert' });
    openPanel(title, h('div', {}, h('p', {}, text), msg,
      h('button', { type: 'button', class: 'danger', id: 'confirm', onclick: async () => {
        try { await action(); closePanel(); } catch (e) { msg.textContent = e.message; }
      } }, label)));
  }
  function deregister(name) {
    confirmThen(`Deregister ${name}?`, `${name} stops resolving and being proxied at once. Its record is kept as inactive.`, `Deregister ${name}`, async () => {
      await api('DELETE', `/v1/services/${encodeURIComponent(name)}`);
      refresh('status', 'services', 'dns', 'certs');
    });
  }
  function certAction(name, what) {
    const text = what === 'rotate' ? `A new key and certificate for ${name}, served from the next connection.`
      : `The current certificate of ${name} goes on the CRL and a new one is served.`;
    confirmThen(`${what === 'rotate' ? 'Rotate' : 'Revoke'} the certificate of ${name}?`, text, what === 'rotate' ? 'Rotate' : 'Revoke', async () => {
      await api('POST', `/v1/certs/${encodeURIComponent(name)}/${what}`);
      refresh('certs', 'status');
    });
  }
  async function resolve(ev) {
    ev.preventDefault();
    const name = doc.getElementById('resolve-name').value.trim();
    const type = doc.getElementById('resolve-type').value;
    try {
      S.lookup = await api('GET', `/v1/dns/resolve?name=${encodeURIComponent(name)}&type=${type}`);
    } catch (e) { S.lookup = { error: e.message }; }
    render();
  }

  // ---- navigation and keys ----
  for (const v of VIEWS) {
    doc.getElementById(`nav-${v}`).addEventListener('click', (e) => { e.preventDefault(); location.hash = v; });
  }
  window.addEventListener('hashchange', () => show(location.hash.slice(1)));
  doc.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') { closePanel(); return; }
    const t = e.target;
    const typing = t && (t.tagName === 'INPUT' || t.tagName === 'SELECT' || t.tagName === 'TEXTAREA');
    if (typing || e.ctrlKey || e.metaKey || e.altKey || !panel.hidden) return;
    if (e.key >= '1' && e.key <= '8') { location.hash = VIEWS[Number(e.key) - 1]; e.preventDefault(); }
    if (e.key === '/') {
      e.preventDefault();
      if (current !== 'services') location.hash = 'services';
      setTimeout(() => { const s = doc.getElementById('search'); if (s) s.focus(); }, 0);
    }
  });
  // Meters get their width from data (no inline style: the policy allows none).
  new MutationObserver(() => {
    for (const el of doc.querySelectorAll('.meter > span[data-w]')) el.className = `w${Math.round(Number(el.dataset.w) / 5) * 5}`;
  }).observe(doc.getElementById('main'), { childList: true, subtree: true });

  show(location.hash.slice(1) || 'dashboard');
  connect();
})();
