// Daily earnings as a bar chart (Chart.js, served from our own static files: no internet).
// Amounts arrive as integer minor units and are formatted with integer arithmetic only.
(function () {
  "use strict";
  var source = document.getElementById("earnings-data");
  var canvas = document.getElementById("earnings-chart");
  if (!source || !canvas || typeof Chart === "undefined") return;
  var data = JSON.parse(source.textContent);
  var unit = Math.pow(10, data.digits);

  function formatMinor(cents) {
    var sign = cents < 0 ? "-" : "";
    var abs = Math.abs(Math.round(cents));
    var whole = Math.floor(abs / unit).toLocaleString("en-US");
    if (!data.digits) return sign + whole + " " + data.currency;
    var part = String(abs % unit).padStart(data.digits, "0");
    return sign + whole + "." + part + " " + data.currency;
  }

  new Chart(canvas, {
    type: "bar",
    data: {
      labels: data.labels.map(function (day) { return day.slice(5); }),
      datasets: [{
        label: "Earned (" + data.currency + ")",
        data: data.cents,
        backgroundColor: "#2f5bd3",
        borderRadius: 3,
      }],
    },
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      plugins: {
        legend: { display: false },
        tooltip: {
          callbacks: {
            title: function (items) { return data.labels[items[0].dataIndex]; },
            label: function (item) { return formatMinor(item.raw); },
          },
        },
      },
      scales: {
        x: { ticks: { maxRotation: 0, autoSkipPadding: 8 } },
        y: {
          beginAtZero: true,
          ticks: { precision: 0, callback: function (value) { return formatMinor(value); } },
        },
      },
    },
  });
  canvas.dataset.rendered = "true";
})();
