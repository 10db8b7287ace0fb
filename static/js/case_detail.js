// The case page: polls the case's status until the prediction arrives, then swaps in the result
// panel; toggles the heatmap overlay ("regions that influenced the model").
(function () {
  "use strict";
  var panel = document.getElementById("result-panel");
  var badge = document.getElementById("case-status");
  var heatmap = document.getElementById("heatmap");
  var controls = document.getElementById("heatmap-controls");
  var toggle = document.getElementById("heatmap-toggle");

  function showHeatmapControls() {
    var result = document.getElementById("result");
    if (controls && result && result.dataset.hasHeatmap === "true") controls.hidden = false;
  }

  if (toggle && heatmap) {
    var apply = function () {
      if (toggle.checked && !heatmap.getAttribute("src")) heatmap.src = heatmap.dataset.src;
      heatmap.hidden = !toggle.checked;
    };
    toggle.addEventListener("change", apply);
    document.addEventListener("keydown", function (event) {
      var tag = (event.target.tagName || "").toLowerCase();
      if (event.key === "h" && tag !== "input" && tag !== "textarea" && tag !== "select" && !controls.hidden) {
        toggle.checked = !toggle.checked;
        apply();
      }
    });
  }

  if (!panel || panel.dataset.pending !== "true") return;
  var url = panel.dataset.statusUrl;
  var interval = parseInt(panel.dataset.pollMs, 10) || 1500;
  var failures = 0;

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        failures = 0;
        panel.innerHTML = data.html;
        if (badge) {
          badge.textContent = data.status.charAt(0).toUpperCase() + data.status.slice(1);
          badge.className = "status status-" + data.status;
        }
        showHeatmapControls();
        // After the result, its heatmap follows (a task of its own): keep asking until it is there.
        if (data.pending || data.heatmap_pending) window.setTimeout(poll, interval);
      })
      .catch(function () {
        failures += 1;
        window.setTimeout(poll, Math.min(30000, interval * Math.pow(2, failures)));
      });
  }
  window.setTimeout(poll, interval);
})();
