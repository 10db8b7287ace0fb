// Shows the "new patient" / "new lesion" fields only when no existing record is picked,
// and narrows the lesion list to the chosen patient.
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
    var filter = function () {
      var label = patient.value ? patient.options[patient.selectedIndex].text + " — " : null;
      all.forEach(function (option) {
        option.hidden = !!(option.value && label && option.text.indexOf(label) !== 0);
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
