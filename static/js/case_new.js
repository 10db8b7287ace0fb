// Shows the "new patient" / "new lesion" fields only when no existing record is picked,
// and offers only the chosen patient's lesions (none for a new patient).
(function () {
  "use strict";
  function toggle(select) {
    var block = document.querySelector('[data-new-for="' + select.id + '"]');
    if (block) block.hidden = select.value !== "";
  }
  var patient = document.getElementById("id_patient");
  var lesion = document.getElementById("id_lesion");
  [patient, lesion].forEach(function (select) {
    if (!select) return;
    toggle(select);
    select.addEventListener("change", function () { toggle(select); });
  });
  if (patient && lesion) {
    var all = Array.prototype.slice.call(lesion.options);
    // Only the chosen patient's lesions; a new patient has none yet (only "new lesion").
    var filter = function () {
      all.forEach(function (option) {
        var hide = !!option.value && option.getAttribute("data-patient") !== patient.value;
        option.hidden = hide;
        option.disabled = hide;
      });
      if (lesion.selectedOptions.length && lesion.selectedOptions[0].hidden) {
        lesion.value = "";
        toggle(lesion);
      }
    };
    patient.addEventListener("change", filter);
    filter();
  }
  // "Taken at" offers no future time (the server refuses one too, in the page's time zone).
  var takenAt = document.getElementById("id_captured_at");
  if (takenAt) {
    var now = new Date();
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    takenAt.max = now.getFullYear() + "-" + pad(now.getMonth() + 1) + "-" + pad(now.getDate()) +
      "T" + pad(now.getHours()) + ":" + pad(now.getMinutes());
  }
  // One submit: the button is disabled and says what is happening (the server also lands a
  // repeated submit of this page on the case the first one made).
  var form = document.querySelector("form.form-grid");
  var button = document.getElementById("submit-case");
  var progress = document.getElementById("submit-progress");
  if (form && button) {
    form.addEventListener("submit", function (event) {
      if (button.disabled) { event.preventDefault(); return; }
      button.disabled = true;
      button.textContent = "Uploading…";
      if (progress) progress.hidden = false;
    });
  }
})();
