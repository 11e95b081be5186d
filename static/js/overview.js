// Overview: filters and sorting refresh the table in place and stay in the URL (deep links).
(function () {
  var form = document.getElementById('overview-filters');
  var container = document.getElementById('overview-table');
  if (!form || !container) { return; }
  var applyButton = document.getElementById('filter-apply');
  if (applyButton) { applyButton.hidden = true; }  // filters apply as you type
  var pending = null;
  var debounce = null;

  function queryFromForm() {
    var params = new URLSearchParams();
    new FormData(form).forEach(function (value, key) {
      if (value === '') { return; }
      if (key === 'sort' && value === 'severity' && form.elements.dir.value === 'asc') { return; }
      if (key === 'dir' && value === 'asc') { return; }
      params.set(key, value);
    });
    return params.toString();
  }

  function apply() {
    var query = queryFromForm();
    var pageUrl = form.getAttribute('action') + (query ? '?' + query : '');
    var fragmentUrl = form.getAttribute('action') + '?' + (query ? query + '&' : '') + 'part=table';
    history.replaceState(null, '', pageUrl);
    container.dataset.refreshUrl = fragmentUrl;
    if (pending) { pending.abort(); }
    pending = new AbortController();
    fetch(fragmentUrl, { headers: { 'X-Requested-With': 'fetch' }, credentials: 'same-origin', signal: pending.signal })
      .then(function (r) {
        if (!r.ok) { throw new Error('HTTP ' + r.status); }
        return r.text();
      })
      .then(function (html) {
        container.innerHTML = html;
        if (window.monitorUI) { window.monitorUI.hideBanner(); }
      })
      .catch(function (err) {
        if (err.name !== 'AbortError' && window.monitorUI) {
          window.monitorUI.showBanner('Could not load the groups (' + err.message + ').');
        }
      });
  }

  form.addEventListener('submit', function (e) { e.preventDefault(); apply(); });
  form.addEventListener('change', function (e) { if (e.target.tagName === 'SELECT') { apply(); } });
  form.elements.q.addEventListener('input', function () {
    clearTimeout(debounce);
    debounce = setTimeout(apply, 250);
  });
  // Column headers are links carrying sort and dir; keep them but apply them in place.
  container.addEventListener('click', function (e) {
    var link = e.target.closest('th a[data-sort]');
    if (!link) { return; }
    e.preventDefault();
    var params = new URL(link.href, window.location.href).searchParams;
    form.elements.sort.value = params.get('sort') || 'severity';
    form.elements.dir.value = params.get('dir') || 'asc';
    apply();
  });
})();
