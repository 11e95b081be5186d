// Shared behaviour: dark mode toggle, periodic refresh of marked fragments without a full reload.
(function () {
  var toggle = document.getElementById('theme-toggle');
  if (toggle) {
    toggle.addEventListener('click', function () {
      var next = document.documentElement.dataset.theme === 'dark' ? 'light' : 'dark';
      document.documentElement.dataset.theme = next;
      localStorage.setItem('theme', next);
      document.dispatchEvent(new CustomEvent('themechange', { detail: next }));
    });
  }
  // Phones: the nav is collapsed behind a menu button (CSS hides it below 760 px until opened).
  var navToggle = document.getElementById('nav-toggle');
  if (navToggle) {
    navToggle.addEventListener('click', function () {
      var open = document.body.classList.toggle('nav-open');
      navToggle.setAttribute('aria-expanded', open ? 'true' : 'false');
    });
  }
  // Until the user picks a theme, follow the operating system's, also when it changes.
  if (window.matchMedia) {
    var query = window.matchMedia('(prefers-color-scheme: dark)');
    var follow = function () {
      if (localStorage.getItem('theme')) { return; }
      var theme = query.matches ? 'dark' : 'light';
      if (document.documentElement.dataset.theme !== theme) {
        document.documentElement.dataset.theme = theme;
        document.dispatchEvent(new CustomEvent('themechange', { detail: theme }));
      }
    };
    if (query.addEventListener) { query.addEventListener('change', follow); }
  }
  // Any element with data-refresh-url is replaced by that URL's HTML every data-refresh-seconds.
  function refresh(el) {
    var url = el.dataset.refreshUrl;
    fetch(url, { headers: { 'X-Requested-With': 'fetch' }, credentials: 'same-origin' })
      .then(function (r) {
        if (!r.ok) { throw new Error('HTTP ' + r.status); }
        return r.text();
      })
      .then(function (html) {
        el.innerHTML = html;
        hideBanner();
        document.dispatchEvent(new CustomEvent('fragment:refreshed', { detail: el }));
      })
      .catch(function (err) { showBanner('Live refresh failed (' + err.message + '); showing the last data.'); });
  }
  function showBanner(text) {
    var b = document.getElementById('banner');
    if (b) { b.textContent = text; b.hidden = false; }
  }
  function hideBanner() {
    var b = document.getElementById('banner');
    if (b) { b.hidden = true; }
  }
  window.monitorUI = { showBanner: showBanner, hideBanner: hideBanner };
  document.querySelectorAll('[data-refresh-url]').forEach(function (el) {
    var seconds = parseInt(el.dataset.refreshSeconds || '15', 10);
    setInterval(function () { if (!document.hidden) { refresh(el); } }, seconds * 1000);
  });
})();
