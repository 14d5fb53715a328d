// The partner web app's only script (served from /app/assets, allowed by `script-src 'self'`).
// Every page works without it; it adds: the REMOVE confirmation gate, ARIA tabs on the client
// panel, the credit chart (uPlot, also served by the service), and re-checking a pending result.
(function () {
  'use strict';

  // "Remove access": the button stays disabled until the confirmation word is typed exactly.
  function confirmGates() {
    document.querySelectorAll('input[data-confirm-word]').forEach(function (input) {
      var form = input.form;
      var button = form && form.querySelector('[data-confirm-button]');
      if (!button) return;
      var word = input.getAttribute('data-confirm-word');
      var update = function () { button.disabled = input.value.trim() !== word; };
      input.addEventListener('input', update);
      update();
    });
  }

  // The client panel: sections become a tab list (WAI-ARIA tabs pattern, arrow keys, Home/End).
  function tabs() {
    document.querySelectorAll('[data-tabs]').forEach(function (root) {
      var list = root.querySelector('ul');
      var links = Array.prototype.slice.call(root.querySelectorAll('.tab-list a'));
      if (!list || !links.length) return;
      list.setAttribute('role', 'tablist');
      var panels = links.map(function (a) { return document.getElementById(a.getAttribute('href').slice(1)); });
      function select(index, focus) {
        links.forEach(function (a, i) {
          var on = i === index;
          a.setAttribute('aria-selected', on ? 'true' : 'false');
          a.tabIndex = on ? 0 : -1;
          panels[i].hidden = !on;
        });
        if (focus) links[index].focus();
      }
      links.forEach(function (a, i) {
        a.parentElement.setAttribute('role', 'presentation');
        a.setAttribute('role', 'tab');
        a.setAttribute('aria-controls', panels[i].id);
        panels[i].setAttribute('role', 'tabpanel');
        panels[i].setAttribute('aria-labelledby', a.id);
        panels[i].tabIndex = 0;
        a.addEventListener('click', function (e) {
          e.preventDefault();
          select(i, false);
          if (history.replaceState) history.replaceState(null, '', '#' + panels[i].id);
        });
        a.addEventListener('keydown', function (e) {
          var next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: links.length - 1 }[e.key];
          if (next === undefined) return;
          e.preventDefault();
          select((next + links.length) % links.length, true);
        });
      });
      var start = panels.findIndex(function (p) { return '#' + p.id === location.hash; });
      select(start < 0 ? 0 : start, false);
      root.classList.add('tabs-ready');
    });
  }

  // Sold tier credit over time: one bar per month, from the JSON block the server embedded.
  function chart() {
    var el = document.getElementById('credit-chart');
    var dataEl = document.getElementById('credit-data');
    if (!el || !dataEl || typeof window.uPlot !== 'function') return;
    var data = JSON.parse(dataEl.textContent || '{"months":[]}');
    var months = data.months || [];
    if (!months.length) return;
    var xs = months.map(function (_m, i) { return i; });
    var totals = months.map(function (m) { return m.total; });
    var width = Math.max(280, el.clientWidth || 600);
    var opts = {
      width: width,
      height: 280,
      legend: { show: false },
      cursor: { show: false },
      scales: { x: { time: false, range: [-0.5, months.length - 0.5] }, y: { range: function (_u, _min, max) { return [0, max > 0 ? max * 1.1 : 1]; } } },
      axes: [
        { splits: function () { return xs; }, values: function (_u, splits) { return splits.map(function (i) { var m = months[i]; return m ? m.month : ''; }); }, rotate: months.length > 8 ? -45 : 0, size: months.length > 8 ? 60 : 40 },
        { size: 70 },
      ],
      series: [
        {},
        { label: data.seriesLabel, stroke: '#0b57d0', fill: 'rgba(11, 87, 208, 0.35)', width: 1, paths: window.uPlot.paths.bars({ size: [0.6, 60] }), points: { show: false } },
      ],
    };
    var plot = new window.uPlot(opts, [xs, totals], el);
    el.setAttribute('data-points', String(months.length));
    window.addEventListener('resize', function () { plot.setSize({ width: Math.max(280, el.clientWidth || width), height: 280 }); });
  }

  // A result page whose command is still being applied checks again after a few seconds.
  function autoReload() {
    var link = document.querySelector('[data-auto-reload]');
    if (!link) return;
    var seconds = Number(link.getAttribute('data-auto-reload')) || 3;
    setTimeout(function () { location.reload(); }, seconds * 1000);
  }

  function start() {
    autoReload();
    confirmGates();
    tabs();
    chart();
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
