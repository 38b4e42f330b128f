// baton dashboard: the page is rendered by the daemon; this script only keeps
// it live (fragments and chart points over server-sent events), asks before
// an action, and follows logs. No framework, no request to anyone but the
// dashboard itself. Plain JavaScript: served as it is.
'use strict';

(() => {
  const body = document.body;
  const page = body.dataset.page;
  const service = body.dataset.service || '';
  const liveState = document.getElementById('live-state');
  const setLive = (text) => {
    if (liveState) liveState.textContent = text;
  };

  // ---- times in the reader's own zone ------------------------------------------
  const localTimes = (root) => {
    for (const t of root.querySelectorAll('time[datetime]')) {
      const d = new Date(t.getAttribute('datetime'));
      if (!Number.isNaN(d.getTime())) {
        t.title = t.textContent;
        t.textContent = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
      }
    }
  };
  localTimes(document);

  // ---- confirmation before any action ------------------------------------------
  const dialog = document.getElementById('confirm');
  document.addEventListener('submit', (ev) => {
    const form = ev.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.confirm || !dialog || typeof dialog.showModal !== 'function') return;
    ev.preventDefault();
    const opener = document.activeElement;
    dialog.querySelector('#confirm-text').textContent = form.dataset.confirm;
    const done = (ok) => {
      dialog.close();
      if (!ok) {
        if (opener instanceof HTMLElement) opener.focus();
        return;
      }
      const yes = document.createElement('input');
      yes.type = 'hidden';
      yes.name = 'confirmed';
      yes.value = '1';
      form.append(yes);
      for (const b of form.querySelectorAll('button')) b.disabled = true;
      // A live fragment redrawn while the dialog was open took the form out of the page; a detached form does not submit.
      if (!form.isConnected) {
        form.hidden = true;
        document.body.append(form);
      }
      form.submit();
    };
    dialog.onclick = (e) => {
      const b = e.target.closest('button');
      if (b) done(b.value === 'ok');
    };
    dialog.oncancel = () => done(false);
    dialog.showModal();
    dialog.querySelector('button[value="cancel"]').focus();
  });

  // ---- charts ------------------------------------------------------------------------
  // Okabe–Ito colours (told apart with colour-blindness), and a dash pattern per line too.
  const COLORS = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9'];
  const DASHES = [[], [8, 4], [2, 3], [12, 3, 2, 3]];
  const KEEP = 180;
  const charts = [];
  let times = [];
  let releases = []; // in order of appearance: each keeps its colour
  const values = new Map(); // release -> metric -> (number|null)[]

  const label = (r) => (r === '-' ? 'baton (no instance)' : r);
  const fmt = {
    rps: (v) => (v == null ? '–' : v.toFixed(v >= 10 ? 0 : 1)),
    errorRate: (v) => (v == null ? '–' : `${v.toFixed(1)}%`),
    failed: (v) => (v == null ? '–' : v.toFixed(v >= 10 ? 0 : 1)),
    p99Ms: (v) => (v == null ? '–' : `≤${v} ms`),
    inflight: (v) => (v == null ? '–' : String(v)),
    websockets: (v) => (v == null ? '–' : String(v)),
  };
  const pointValue = (metric, p) => {
    if (!p) return null;
    if (metric === 'errorRate') return p.errorRate == null ? null : p.errorRate * 100;
    return p[metric];
  };

  const addTick = (tick) => {
    times.push(tick.t);
    for (const r of Object.keys(tick.releases)) {
      if (!releases.includes(r)) {
        releases.push(r);
        values.set(r, {});
      }
    }
    for (const r of releases) {
      const m = values.get(r);
      for (const el of charts) {
        const metric = el.metric;
        (m[metric] ??= new Array(times.length - 1).fill(null)).push(pointValue(metric, tick.releases[r]));
      }
    }
    if (times.length > KEEP) {
      const cut = times.length - KEEP;
      times = times.slice(cut);
      for (const m of values.values()) for (const k of Object.keys(m)) m[k] = m[k].slice(cut);
    }
  };

  const clock = (secs) => new Date(secs * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  const chartWidth = (el) => Math.max(240, el.div.clientWidth);
  const makeChart = (el) => {
    const css = getComputedStyle(body);
    const fg = css.getPropertyValue('--fg').trim() || '#111';
    const grid = css.getPropertyValue('--grid').trim() || '#ddd';
    const opts = {
      width: chartWidth(el),
      height: 170,
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(max, el.metric === 'errorRate' ? 1 : 1)] } },
      axes: [
        // One line per tick, the wall-clock time: uPlot's default adds a date
        // line under the first tick of each minute, which crowds a narrow chart.
        { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid }, space: 64, values: (u, splits) => splits.map(clock) },
        { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid }, size: 52 },
      ],
      // The legend names the releases (colour and dash); the table above the charts has the figures.
      legend: { live: false },
      series: [{}, ...releases.map((r, i) => ({
        label: label(r),
        stroke: COLORS[i % COLORS.length],
        width: 2,
        dash: DASHES[i % DASHES.length],
        spanGaps: false,
        value: (u, v) => fmt[el.metric](v),
      }))],
    };
    const data = [times, ...releases.map((r) => values.get(r)[el.metric] ?? new Array(times.length).fill(null))];
    el.div.textContent = '';
    el.plot = new window.uPlot(opts, data, el.div);
    el.series = releases.length;
  };
  const redraw = () => {
    for (const el of charts) {
      if (!el.plot || el.series !== releases.length) {
        if (el.plot) el.plot.destroy();
        makeChart(el);
      } else {
        el.plot.setData([times, ...releases.map((r) => values.get(r)[el.metric])]);
      }
    }
  };

  if (page === 'service' && window.uPlot) {
    for (const div of document.querySelectorAll('.chart[data-metric]')) charts.push({ div, metric: div.dataset.metric, plot: null, series: 0 });
    const history = JSON.parse(document.getElementById('history')?.textContent || '[]');
    for (const t of history) addTick(t);
    redraw();
    let pending = 0;
    window.addEventListener('resize', () => {
      clearTimeout(pending);
      pending = setTimeout(() => {
        for (const el of charts) el.plot?.setSize({ width: chartWidth(el), height: 170 });
      }, 150);
    });
  }

  // ---- live fragments ---------------------------------------------------------------
  // The fleet page (`baton fleet dashboard`) is kept live the same way, by its own server.
  if (page === 'overview' || page === 'service' || page === 'fleet') {
    const es = new EventSource(page === 'service' ? `/live?service=${encodeURIComponent(service)}` : '/live');
    es.onopen = () => setLive('live');
    es.onerror = () => setLive(es.readyState === EventSource.CLOSED ? 'disconnected: reload the page' : 'reconnecting…');
    es.addEventListener('fragments', (ev) => {
      const frags = JSON.parse(ev.data);
      for (const [id, h] of Object.entries(frags)) {
        const el = document.getElementById(id);
        if (!el) continue;
        // Keep keyboard focus where it was when the part holding it is redrawn.
        const focused = el.contains(document.activeElement) ? document.activeElement : null;
        const key = focused?.closest('form')?.getAttribute('action');
        // Disclosures the reader opened stay open.
        const open = new Set([...el.querySelectorAll('details[data-key][open]')].map((d) => d.dataset.key));
        el.innerHTML = h;
        for (const d of el.querySelectorAll('details[data-key]')) if (open.has(d.dataset.key)) d.open = true;
        localTimes(el);
        if (key) el.querySelector(`form[action="${CSS.escape(key)}"] button`)?.focus();
      }
    });
    es.addEventListener('tick', (ev) => {
      if (!charts.length) return;
      addTick(JSON.parse(ev.data));
      redraw();
    });
    es.addEventListener('gone', () => {
      es.close();
      setLive('this service is gone: reload the page');
    });
  }

  // ---- logs ---------------------------------------------------------------------------
  if (page === 'logs') {
    const pre = document.getElementById('log');
    const follow = document.getElementById('follow');
    const MAX_LINES = 2000;
    let es = null;
    setLive('');
    pre.scrollTop = pre.scrollHeight;
    follow.addEventListener('change', () => {
      if (!follow.checked) {
        es?.close();
        es = null;
        setLive('');
        return;
      }
      es = new EventSource(`/services/${encodeURIComponent(service)}/logs/live`);
      es.onopen = () => setLive('following');
      es.onerror = () => setLive('reconnecting…');
      es.addEventListener('lines', (ev) => {
        const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        const text = pre.textContent + (pre.textContent ? '\n' : '') + JSON.parse(ev.data).join('\n');
        const lines = text.split('\n');
        pre.textContent = lines.length > MAX_LINES ? lines.slice(-MAX_LINES).join('\n') : text;
        if (atEnd) pre.scrollTop = pre.scrollHeight;
      });
    });
  } else if (page !== 'overview' && page !== 'service' && page !== 'fleet') {
    setLive('');
  }
})();
