// Lag charts (group and topic pages): draw the server-built Plotly figures, follow the
// dark/light theme, and refresh them in place without reloading the page.
(function () {
  var dataEl = document.getElementById('chart-data');
  var root = document.getElementById('charts');
  if (!dataEl || !root || typeof Plotly === 'undefined') { return; }
  var config = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ['lasso2d', 'select2d'] };
  var charts = JSON.parse(dataEl.textContent);

  function themed(layout) {
    var style = getComputedStyle(document.documentElement);
    var fg = style.getPropertyValue('--fg').trim() || '#1d2330';
    var grid = style.getPropertyValue('--border').trim() || '#dde1e8';
    var copy = JSON.parse(JSON.stringify(layout));
    copy.font = { color: fg };
    ['xaxis', 'yaxis'].forEach(function (axis) {
      copy[axis] = Object.assign({}, copy[axis], { gridcolor: grid, zerolinecolor: grid });
    });
    return copy;
  }

  function sameCharts(next) {
    if (next.length !== charts.length) { return false; }
    return next.every(function (c, i) { return c.id === charts[i].id && c.topic === charts[i].topic; });
  }

  function rebuild(next) {
    // The set of topics changed: lay the chart containers out again.
    root.innerHTML = '';
    if (!next.length) {
      var empty = document.createElement('p');
      empty.className = 'muted';
      empty.textContent = 'No lag samples in this range yet.';
      root.appendChild(empty);
    }
    next.forEach(function (chart) {
      if (chart.url) {
        var heading = document.createElement('h2');
        var link = document.createElement('a');
        link.href = chart.url;
        link.textContent = chart.topic;
        heading.appendChild(link);
        root.appendChild(heading);
      }
      var div = document.createElement('div');
      div.className = 'chart';
      div.id = chart.id;
      root.appendChild(div);
    });
  }

  function draw(list, react) {
    list.forEach(function (chart) {
      var el = document.getElementById(chart.id);
      if (!el) { return; }
      (react ? Plotly.react : Plotly.newPlot)(el, chart.figure.data, themed(chart.figure.layout), config);
    });
  }

  function refresh() {
    if (document.hidden) { return; }
    fetch(root.dataset.chartsUrl, { headers: { 'X-Requested-With': 'fetch' }, credentials: 'same-origin' })
      .then(function (r) {
        if (!r.ok) { throw new Error('HTTP ' + r.status); }
        return r.json();
      })
      .then(function (body) {
        var next = body.charts;
        var same = sameCharts(next);
        if (!same) { rebuild(next); }
        charts = next;
        draw(charts, same);
        root.dataset.refreshes = String(parseInt(root.dataset.refreshes || '0', 10) + 1);
      })
      .catch(function (err) {
        if (window.monitorUI) { window.monitorUI.showBanner('Chart refresh failed (' + err.message + '); showing the last data.'); }
      });
  }

  draw(charts, false);
  document.addEventListener('themechange', function () { draw(charts, true); });
  var seconds = parseInt(root.dataset.refreshSeconds || '30', 10);
  if (root.dataset.chartsUrl) {
    setInterval(refresh, seconds * 1000);
    document.addEventListener('monitor:refresh', refresh);  // "refresh now" (also used by the tests)
  }
})();
