// The global time-range picker (templates/fragments/range_picker.html): the range lives in
// the URL (?range=1h, or ?since=&until= for a custom window, in UTC) so every view is a link.
(function () {
  if (window.monitorRange) { return; }

  function navigate(changes) {
    var url = new URL(window.location.href);
    Object.keys(changes).forEach(function (key) {
      if (changes[key] === null || changes[key] === '') { url.searchParams.delete(key); }
      else { url.searchParams.set(key, changes[key]); }
    });
    url.searchParams.delete('part');
    window.location.assign(url.toString());
  }

  // <input type="datetime-local"> has no zone; the picker speaks UTC.
  function toIso(value) {
    if (!value) { return ''; }
    return (value.length === 16 ? value + ':00' : value) + 'Z';
  }

  function setUp(form) {
    var select = form.querySelector('[data-range-select]');
    var custom = form.querySelector('[data-range-custom]');
    var inputs = custom ? custom.querySelectorAll('input') : [];
    var apply = form.querySelector('[data-range-apply]');
    function showCustom(on) {
      if (custom) { custom.hidden = !on; }
      inputs.forEach(function (input) { input.disabled = !on; });
      if (apply) { apply.hidden = !on; }
    }
    showCustom(select.value === 'custom');
    select.addEventListener('change', function () {
      if (select.value === 'custom') { showCustom(true); return; }
      navigate({ range: select.value, since: null, until: null });
    });
    form.addEventListener('submit', function (event) {
      event.preventDefault();
      if (select.value !== 'custom') {
        navigate({ range: select.value, since: null, until: null });
        return;
      }
      var since = form.querySelector('[name=since]').value;
      var until = form.querySelector('[name=until]').value;
      navigate({ range: null, since: toIso(since), until: toIso(until) });
    });
  }

  document.querySelectorAll('[data-range-picker]').forEach(setUp);
  window.monitorRange = {
    navigate: navigate,
    // The current range parameters, for scripts that build their own URLs.
    params: function () {
      var current = new URLSearchParams(window.location.search);
      var out = {};
      ['range', 'since', 'until'].forEach(function (key) { if (current.get(key)) { out[key] = current.get(key); } });
      return out;
    }
  };
})();
