// The colour theme, applied before the page paints (loaded in <head>, not deferred): the one
// the user chose, else the operating system's (prefers-color-scheme; base.js follows changes).
// A file, not an inline script: the Content-Security-Policy allows scripts from this site only.
(function () {
  var theme = localStorage.getItem('theme') ||
    (window.matchMedia && window.matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light');
  document.documentElement.dataset.theme = theme;
})();
