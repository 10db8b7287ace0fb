// Polls the case's status until the prediction arrives, then swaps in the result panel.
(function () {
  "use strict";
  var panel = document.getElementById("result-panel");
  if (!panel || panel.dataset.pending !== "true") return;
  var url = panel.dataset.statusUrl;
  var interval = parseInt(panel.dataset.pollMs, 10) || 1500;
  var badge = document.getElementById("case-status");
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
        if (data.pending) window.setTimeout(poll, interval);
      })
      .catch(function () {
        failures += 1;
        window.setTimeout(poll, Math.min(30000, interval * Math.pow(2, failures)));
      });
  }
  window.setTimeout(poll, interval);
})();
