// Keyboard review: 1 agree, 2 override (focuses the diagnosis), 3 send back; Enter saves.
// By value: "agree" is not offered when the model's two answers disagree.
(function () {
  "use strict";
  var keys = { "1": "agree", "2": "override", "3": "send_back" };
  var diagnosis = document.getElementById("id_final_diagnosis");
  document.addEventListener("keydown", function (event) {
    var tag = (event.target.tagName || "").toLowerCase();
    if (tag === "textarea" || tag === "select" || (tag === "input" && event.target.type === "text")) return;
    var value = keys[event.key];
    var radio = value && document.querySelector('.review-form input[name="verdict"][value="' + value + '"]');
    if (radio) {
      radio.checked = true;
      radio.focus();
      if (value === "override" && diagnosis) diagnosis.focus();
    }
  });
})();
