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
})();
