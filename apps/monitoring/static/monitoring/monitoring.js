// The monitoring page's charts, drawn with the vendored uPlot (vendor/uplot-1.6.32, MIT) from
// the JSON the page embeds (#monitoring-data, apps/monitoring/selectors.py drift_series).
// Every number is also in the page's tables: the page reads without this script.
(function () {
  "use strict";
  var PALETTE = ["#2f5bd3", "#d3492f", "#1f7a3d", "#9a6700", "#7a3db3", "#138a8a", "#b3261e"];
  var THRESHOLD = { stroke: "#5b6475", width: 1, dash: [6, 4], points: { show: false } };
  var charts = [];

  function constant(n, value) {
    var out = [];
    for (var i = 0; i < n; i++) out.push(value);
    return out;
  }

  function widthOf(el) {
    return Math.max(240, Math.floor(el.clientWidth || 600));
  }

  function draw(el, opts, data) {
    opts.width = widthOf(el);
    opts.height = opts.height || 200;
    var chart = new uPlot(opts, data, el);
    charts.push([el, chart]);
    el.dataset.drawn = "true";
    return chart;
  }

  function timeChart(el, t, series, ylabel) {
    var opts = {
      scales: { x: { time: true } },
      series: [{}].concat(series.map(function (s) { return s.opts; })),
      axes: [{}, { label: ylabel, size: 56 }],
      legend: { show: true },
    };
    return draw(el, opts, [t].concat(series.map(function (s) { return s.values; })));
  }

  function shareChart(el, data) {
    var n = data.t.length;
    var series = [{ opts: { label: "drift share", stroke: PALETTE[1], width: 2, spanGaps: true }, values: data.drift_share }];
    if (data.drift_share_threshold !== null) {
      series.push({ opts: Object.assign({ label: "threshold" }, THRESHOLD), values: constant(n, data.drift_share_threshold) });
    }
    timeChart(el, data.t, series, "share");
  }

  function performanceChart(el, data) {
    var names = Object.keys(data.performance).sort();
    timeChart(el, data.t, names.map(function (name, i) {
      return { opts: { label: name, stroke: PALETTE[i % PALETTE.length], width: 2, spanGaps: true }, values: data.performance[name] };
    }), "value");
  }

  function featureChart(el, data, name) {
    var f = data.features[name];
    if (!f) return;
    var series = [{ opts: { label: f.test + " score", stroke: PALETTE[0], width: 2, spanGaps: true }, values: f.score }];
    if (f.threshold !== null) {
      series.push({ opts: Object.assign({ label: "threshold" }, THRESHOLD), values: constant(data.t.length, f.threshold) });
    }
    timeChart(el, data.t, series, "score");
  }

  function histogramChart(el, data, name) {
    var h = data.histograms[name];
    if (!h) return;
    var xs = h.labels.map(function (_, i) { return i; });
    var bars = uPlot.paths.bars;
    var opts = {
      scales: { x: { time: false, range: [-0.5, xs.length - 0.5] }, y: { range: [0, null] } },
      series: [
        {},
        { label: "reference", fill: "rgba(91,100,117,0.45)", stroke: "#5b6475", paths: bars({ size: [0.45, 80], align: -1 }), points: { show: false } },
        { label: "current", fill: "rgba(211,73,47,0.55)", stroke: PALETTE[1], paths: bars({ size: [0.45, 80], align: 1 }), points: { show: false } },
      ],
      axes: [
        {
          splits: function () { return xs; },
          values: function (u, splits) {
            // Every label when few; else every k-th, so they do not overlap.
            var k = Math.ceil(splits.length / 8);
            return splits.map(function (i, j) { return j % k === 0 ? h.labels[i] : ""; });
          },
        },
        { label: "share", size: 56 },
      ],
      legend: { show: true },
    };
    draw(el, opts, [xs, h.reference, h.current]);
  }

  function start() {
    var holder = document.getElementById("monitoring-data");
    if (!holder || typeof uPlot === "undefined") return;
    var data = JSON.parse(holder.textContent);
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      var kind = el.dataset.chart;
      if (kind === "share") shareChart(el, data);
      else if (kind === "performance") performanceChart(el, data);
      else if (kind === "feature") featureChart(el, data, el.dataset.feature);
      else if (kind === "histogram") histogramChart(el, data, el.dataset.feature);
    });
    var pending = null;
    window.addEventListener("resize", function () {
      clearTimeout(pending);
      pending = setTimeout(function () {
        charts.forEach(function (pair) {
          pair[1].setSize({ width: widthOf(pair[0]), height: pair[1].height });
        });
      }, 150);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
