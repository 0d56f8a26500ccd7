/* The reports page's charts, drawn by Chart.js (and its matrix plugin for the heatmap)
   from the figures the server put in #charts[data-figures]. Loaded as a file: the CSP
   forbids inline script. Every chart has its figures in a table beside it. */
"use strict";
(function () {
  // Told apart with the common colour-vision deficiencies (Okabe-Ito and Tol's hues,
  // darkened where needed) and each at least 3:1 against the white page (WCAG 1.4.11).
  var PALETTE = ["#0072B2", "#C25400", "#007A5A", "#AA4499", "#332288", "#8A6100", "#117733", "#444444"];
  var INK = "#1a1a1a";

  function colour(i) { return PALETTE[i % PALETTE.length]; }

  function draw() {
    var root = document.getElementById("charts");
    if (!root || typeof Chart === "undefined") return;
    var data = JSON.parse(root.dataset.figures);
    var words = JSON.parse(root.dataset.labels);
    var locale = root.dataset.lang === "en" ? "en-GB" : "fr-FR";
    Chart.defaults.color = INK;
    Chart.defaults.font.size = 14;
    Chart.defaults.animation = false; // figures, not a show; and steady screenshots
    Chart.defaults.maintainAspectRatio = false;
    Chart.defaults.locale = locale;

    var visits = document.getElementById("chart-visits");
    if (visits) {
      new Chart(visits, {
        type: "bar",
        data: {
          labels: data.visits.labels,
          datasets: data.visits.series.map(function (s, i) {
            return { label: s.name, data: s.data, backgroundColor: colour(i) };
          })
        },
        options: {
          scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, title: { display: true, text: words.visits }, ticks: { precision: 0 } } },
          plugins: { legend: { position: "bottom" } }
        }
      });
    }

    var occupancy = document.getElementById("chart-occupancy");
    if (occupancy) {
      var cells = data.occupancy;
      var max = Math.max.apply(null, cells.map(function (c) { return c.people; }).concat([0.001]));
      var days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
      var busy = cells.filter(function (c) { return c.people > 0; }).map(function (c) { return c.hour; });
      var first = Math.min.apply(null, busy.concat([7]));
      var last = Math.max.apply(null, busy.concat([20]));
      var hours = [];
      for (var h = first; h <= last; h++) hours.push(h + " h");
      var shown = cells.filter(function (c) { return c.hour >= first && c.hour <= last; });
      new Chart(occupancy, {
        type: "matrix",
        data: {
          datasets: [{
            label: words.people,
            data: shown.map(function (c) {
              return { x: c.hour + " h", y: words.weekdays[days.indexOf(c.weekday)], v: c.people };
            }),
            backgroundColor: function (ctx) {
              var v = ctx.raw ? ctx.raw.v : 0;
              return "rgba(11, 79, 138, " + (0.06 + 0.94 * v / max).toFixed(3) + ")";
            },
            borderColor: "#ffffff",
            borderWidth: 1,
            width: function (ctx) { var a = ctx.chart.chartArea; return a ? a.width / hours.length - 1 : 10; },
            height: function (ctx) { var a = ctx.chart.chartArea; return a ? a.height / 7 - 1 : 10; }
          }]
        },
        options: {
          plugins: {
            legend: { display: false },
            tooltip: {
              callbacks: {
                title: function (items) { var r = items[0].raw; return r.y + " " + r.x; },
                label: function (item) { return words.people + " : " + item.raw.v.toLocaleString(locale); }
              }
            }
          },
          scales: {
            x: { type: "category", labels: hours, offset: true, grid: { display: false } },
            y: { type: "category", labels: words.weekdays, offset: true, reverse: true, grid: { display: false } }
          }
        }
      });
    }

    var members = document.getElementById("chart-members");
    if (members) {
      members.parentElement.classList.add("rows-" + Math.min(20, data.members.length));
      new Chart(members, {
        type: "bar",
        data: {
          labels: data.members.map(function (r) { return r.name; }),
          datasets: [{ label: words.hours, data: data.members.map(function (r) { return r.hours; }), backgroundColor: colour(2) }]
        },
        options: { indexAxis: "y", plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true, title: { display: true, text: words.hours } } } }
      });
    }

    var impact = document.getElementById("chart-impact");
    if (impact && data.impact.centres.length) {
      new Chart(impact, {
        type: "bar",
        data: {
          labels: data.impact.centres.map(function (r) { return r.name; }),
          datasets: [{ label: words.kg, data: data.impact.centres.map(function (r) { return r.kg_co2e; }), backgroundColor: colour(1) }]
        },
        options: { indexAxis: "y", plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true, title: { display: true, text: words.kg } } } }
      });
    }
    root.dataset.drawn = "true";
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw);
  else draw();
})();
