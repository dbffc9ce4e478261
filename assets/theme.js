// Runs before the first paint (a classic script in <head>; the page's CSP allows no inline
// script), so a remembered dark choice never flashes light. prefs.js takes over from here.
(function () {
  var theme = 'system';
  try {
    theme = JSON.parse(localStorage.getItem('pistats.prefs') || '{}').theme || 'system';
  } catch (e) {}
  if (theme !== 'light' && theme !== 'dark') {
    theme = window.matchMedia && matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
  }
  document.documentElement.setAttribute('data-theme', theme);
})();
