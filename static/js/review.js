// Keyboard review: 1 agree, 2 different final diagnosis (focuses the diagnosis), 3 send back.
// By value: "agree" is not offered when the model's two answers disagree.
// The fieldsets that do not belong to the chosen verdict (data-verdicts) or management
// (data-management) are hidden; without JavaScript every field shows and the server checks.
(function () {
  "use strict";
  var form = document.querySelector(".review-form");
  if (!form) return;
  var keys = { "1": "agree", "2": "override", "3": "send_back" };
  var diagnosis = document.getElementById("id_final_diagnosis");

  function checked(name) {
    var input = form.querySelector('input[name="' + name + '"]:checked');
    return input ? input.value : "";
  }
  function update() {
    var verdict = checked("verdict");
    form.querySelectorAll("[data-verdicts]").forEach(function (el) {
      el.hidden = !verdict || el.dataset.verdicts.split(" ").indexOf(verdict) < 0;
    });
    var management = checked("management");
    form.querySelectorAll("[data-management]").forEach(function (el) {
      el.hidden = el.dataset.management !== management;
    });
  }
  form.addEventListener("change", update);
  update();

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var tag = (event.target.tagName || "").toLowerCase();
    if (tag === "textarea" || tag === "select" || (tag === "input" && /^(text|number|search)$/.test(event.target.type))) return;
    var value = keys[event.key];
    var radio = value && form.querySelector('input[name="verdict"][value="' + value + '"]');
    if (radio) {
      radio.checked = true;
      radio.focus();
      update();
      if (value === "override" && diagnosis) diagnosis.focus();
    }
  });
})();
