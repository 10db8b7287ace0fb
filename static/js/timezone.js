// The browser's time zone travels to the server: a cookie ("tz") for every page's dates
// (diagnosis.middleware.TimeZoneMiddleware), the hidden "tz" field of a form that reads a
// date, and the page's "Times are in …" note. The server checks the name.
(function () {
  "use strict";
  var zone;
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch (error) {
    return;
  }
  if (!zone || !/^[A-Za-z0-9_+\-\/]+$/.test(zone)) return;
  var secure = window.location.protocol === "https:" ? "; secure" : "";
  document.cookie = "tz=" + zone + "; path=/; max-age=31536000; samesite=lax" + secure;
  Array.prototype.forEach.call(document.querySelectorAll('input[type=hidden][name="tz"]'), function (input) {
    input.value = zone;
  });
  Array.prototype.forEach.call(document.querySelectorAll("[data-time-zone]"), function (note) {
    note.textContent = zone;
  });
})();
