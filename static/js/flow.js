// Charts of the flow area (flow graph, trace timeline, service/topic rates): draw the
// server-built Plotly figures in the page's theme, re-colour them on 'themechange',
// follow clicks on nodes and edges, and refresh in place without a full reload.
//
// Markup: <div data-figure="json-script-id" [data-click-navigate]
//              [data-live-url="?part=figure" data-refresh-seconds="30" data-live-table="id"]>
(function () {
  if (typeof Plotly === 'undefined') { return; }
  var ROLE_VARS = { ok: '--ok', warning: '--warn', critical: '--bad', unknown: '--info', fg: '--fg',
                    muted: '--muted', bg: '--card', grid: '--border', accent: '--accent' };
  var CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ['lasso2d', 'select2d'] };
  var charts = [];

  function palette() {
    var style = getComputedStyle(document.documentElement);
    var colours = {};
    Object.keys(ROLE_VARS).forEach(function (role) { colours[role] = style.getPropertyValue(ROLE_VARS[role]).trim(); });
    return colours;
  }

  // Figures name colours by role (trace.meta.role, layout.meta.roles); map them to CSS variables.
  function themed(figure) {
    var p = palette();
    var f = JSON.parse(JSON.stringify(figure));
    f.data.forEach(function (trace) {
      var meta = trace.meta || {};
      var colour = p[meta.role];
      if (!colour) { return; }
      if (trace.line && trace.mode === 'lines') { trace.line.color = colour; }
      if (trace.marker) {
        trace.marker.color = colour;
        var line = trace.marker.line;
        if (line && trace.type === 'bar' && Array.isArray(line.width)) {
          line.color = line.width.map(function (w) { return w >= 3 ? p.fg : colour; });
        } else if (line && meta.linerole) {
          line.color = p[meta.linerole];
        } else if (line) {
          line.color = colour;
        }
        if (trace.marker.pattern) { trace.marker.pattern.fgcolor = p[meta.patternrole] || p.fg; }
      }
      if (trace.textfont && meta.textrole) { trace.textfont.color = p[meta.textrole]; }
    });
    var layout = f.layout;
    var roles = (layout.meta && layout.meta.roles) || {};
    Object.keys(roles).forEach(function (path) {
      var parts = path.split('.');
      var target = layout;
      for (var i = 0; i < parts.length - 1; i++) {
        target[parts[i]] = target[parts[i]] || {};
        target = target[parts[i]];
      }
      if (p[roles[path]]) { target[parts[parts.length - 1]] = p[roles[path]]; }
    });
    (layout.annotations || []).forEach(function (a) {
      a.font = Object.assign({}, a.font, { color: p.fg });
      a.arrowcolor = p.fg;
    });
    return f;
  }

  function draw(chart, react) {
    var f = themed(chart.figure);
    return (react ? Plotly.react : Plotly.newPlot)(chart.el, f.data, f.layout, CONFIG);
  }

  function banner(text) { if (window.monitorUI) { window.monitorUI.showBanner(text); } }

  function refresh(chart) {
    if (document.hidden) { return; }
    fetch(chart.el.dataset.liveUrl, { headers: { 'X-Requested-With': 'fetch', 'Accept': 'application/json' },
                                      credentials: 'same-origin' })
      .then(function (r) {
        var type = r.headers.get('Content-Type') || '';
        if (r.redirected || type.indexOf('application/json') === -1) {
          throw new Error('your session may have expired; reload the page to log in');
        }
        if (!r.ok) { throw new Error('HTTP ' + r.status); }
        return r.json();
      })
      .then(function (body) {
        chart.figure = body.figure;
        draw(chart, true);
        var tableId = chart.el.dataset.liveTable;
        var table = tableId && document.getElementById(tableId);
        if (table && typeof body.table_html === 'string') { table.innerHTML = body.table_html; }
        if (window.monitorUI) {
          if (body.banners && body.banners.length) { banner(body.banners.join(' ')); }
          else { window.monitorUI.hideBanner(); }
        }
      })
      .catch(function (err) { banner('Live refresh failed (' + err.message + '); showing the last data.'); });
  }

  function setUp(el) {
    if (el.dataset.figureReady) { return; }
    var source = document.getElementById(el.dataset.figure);
    if (!source) { return; }
    el.dataset.figureReady = '1';
    var chart = { el: el, figure: JSON.parse(source.textContent) };
    charts = charts.filter(function (c) { return document.body.contains(c.el); });
    charts.push(chart);
    draw(chart, false).then(function () {
      highlightOnHover(el);
      el.on('plotly_click', function (event) {
        var point = event.points && event.points[0];
        var target = point && point.customdata;
        if ('clickNavigate' in el.dataset && typeof target === 'string' && target.charAt(0) === '/') {
          window.location.assign(target);
        }
        el.dispatchEvent(new CustomEvent('chart:click', { detail: target, bubbles: true }));
      });
    });
    if (el.dataset.liveUrl) {
      var seconds = parseInt(el.dataset.refreshSeconds || '30', 10);
      setInterval(function () { refresh(chart); }, seconds * 1000);
    }
  }

  // Hovering anywhere along an edge (its invisible hit points) draws that edge's whole path
  // over the others, so crossing edges are told apart; touch devices get it on tap.
  function highlightOnHover(el) {
    function traceIndex(part) {
      return (el.data || []).findIndex(function (t) { return t.meta && t.meta.part === part; });
    }
    el.on('plotly_hover', function (event) {
      var point = event.points && event.points[0];
      var meta = point && point.data && point.data.meta;
      var target = traceIndex('edge-highlight');
      if (!meta || meta.part !== 'edge-hit' || target < 0) { return; }
      var path = meta.paths[meta.edge[point.pointNumber]];
      if (path) { Plotly.restyle(el, { x: [path[0]], y: [path[1]] }, [target]); }
    });
    el.on('plotly_unhover', function () {
      var target = traceIndex('edge-highlight');
      if (target >= 0) { Plotly.restyle(el, { x: [[]], y: [[]] }, [target]); }
    });
  }

  function scan(root) { root.querySelectorAll('[data-figure]').forEach(setUp); }

  scan(document);
  document.addEventListener('themechange', function () {
    charts.forEach(function (chart) { if (document.body.contains(chart.el)) { draw(chart, true); } });
  });
  // base.js swaps fragments in (service and topic pages): draw the charts they carry.
  document.addEventListener('fragment:refreshed', function (event) { scan(event.detail || document); });
  // The flow page's focus, hops and hub choices apply at once (no separate Apply click).
  var filters = document.getElementById('flow-filters');
  if (filters) {
    filters.addEventListener('change', function (event) {
      if (event.target.tagName === 'SELECT') { filters.requestSubmit ? filters.requestSubmit() : filters.submit(); }
    });
  }
  window.flowCharts = { themed: themed, scan: scan };
})();
