// The saved colour theme, applied before the page paints (loaded in <head>, not deferred).
// A file, not an inline script: the Content-Security-Policy allows scripts from this site only.
(function () {
  var theme = localStorage.getItem('theme');
  if (theme) { document.documentElement.dataset.theme = theme; }
})();
