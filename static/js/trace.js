// Trace page: clicking a bar or mark of the timeline highlights that event's reports in
// the table below (and scrolls to the first); the search box keeps the time range.
(function () {
  var chart = document.getElementById('trace-timeline');
  var table = document.getElementById('trace-events');
  if (!chart || !table) { return; }
  chart.addEventListener('chart:click', function (event) {
    var eventId = event.detail;
    if (typeof eventId !== 'string') { return; }
    var first = null;
    table.querySelectorAll('tr[data-event-id]').forEach(function (row) {
      var match = row.dataset.eventId === eventId;
      row.classList.toggle('highlight', match);
      if (match && !first) { first = row; }
    });
    if (first) { first.scrollIntoView({ behavior: 'smooth', block: 'center' }); }
  });
})();
