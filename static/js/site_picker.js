// The anatomic-site picker (diagnosis.widgets.AnatomicSiteSelect): once a region is chosen,
// the site list offers only that region's groups. Without this script both lists work as
// they are (the site, when one is chosen, wins). Groups are taken out of the list rather
// than hidden: some phone browsers show hidden options anyway.
(function () {
  "use strict";
  function regionOf(value) { return value.split(":")[0]; }

  function enhance(region) {
    var site = document.getElementById(region.getAttribute("data-site-region-for"));
    if (!site) return;
    var groups = Array.prototype.slice.call(site.querySelectorAll("optgroup"));
    var groupRegion = function (group) {
      var first = group.querySelector("option");
      return first ? regionOf(first.value) : "";
    };
    var show = function () {
      var chosen = region.value;
      var current = site.value;
      groups.forEach(function (group) {
        if (group.parentNode) group.parentNode.removeChild(group);
        if (!chosen || groupRegion(group) === chosen) site.appendChild(group);
      });
      site.value = current && (!chosen || regionOf(current) === chosen) ? current : "";
    };
    region.addEventListener("change", show);
    // A site chosen first (no region yet) names its region.
    site.addEventListener("change", function () {
      if (site.value && regionOf(site.value) !== region.value) {
        region.value = regionOf(site.value);
        show();
      }
    });
    show();
  }

  Array.prototype.forEach.call(document.querySelectorAll("select[data-site-region-for]"), enhance);
})();
