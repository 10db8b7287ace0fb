// Keyboard review: 1 agree, 2 override (focuses the diagnosis), 3 send back; Enter saves.
(function () {
  "use strict";
  var radios = document.querySelectorAll('.review-form input[name="verdict"]');
  var diagnosis = document.getElementById("id_final_diagnosis");
  document.addEventListener("keydown", function (event) {
    var tag = (event.target.tagName || "").toLowerCase();
    if (tag === "textarea" || tag === "select" || (tag === "input" && event.target.type === "text")) return;
    var index = ["1", "2", "3"].indexOf(event.key);
    if (index >= 0 && radios[index]) {
      radios[index].checked = true;
      radios[index].focus();
      if (index === 1 && diagnosis) diagnosis.focus();
    }
  });
})();
