"""Form widgets of the clinical records.

``AnatomicSiteSelect`` picks an ISIC anatomic site in two steps: a region ``<select>``, then a
site ``<select>`` whose ``<optgroup>``s are the region's parts. It is plain server-rendered HTML
that works without JavaScript and with the keyboard; ``static/js/site_picker.js`` (the widget's
media: render ``{{ form.media }}``) then offers in the second list only the chosen region's
sites. The value is one ISIC site value: the site when one is chosen, else the region alone.
"""

from __future__ import annotations

from django import forms
from django.utils.html import format_html

from diagnosis.sites import site_region, site_regions

REGION_SUFFIX = "_region"
NO_REGION = "— choose a region —"
NO_SITE = "— no more precise site —"


def _region_choices() -> list[tuple[str, str]]:
    return [("", NO_REGION)] + [(region.value, region.label) for region in site_regions()]


def _site_choices() -> list:
    groups = [group for region in site_regions() for group in region.groups]
    return [("", NO_SITE)] + [(group.label, list(group.sites)) for group in groups]


class AnatomicSiteSelect(forms.Widget):
    """A region, then a site of that region; posted as ``<name>_region`` and ``<name>``.

    Use it with a ``ChoiceField`` of ``ANATOMIC_SITE_CHOICES``. The field's label becomes the
    legend of a fieldset (``use_fieldset``) that holds the two labelled lists.
    """

    use_fieldset = True

    class Media:
        js = [forms.Script("js/site_picker.js", defer=True)]

    def __init__(self, attrs=None):
        super().__init__(attrs)
        self.region_select = forms.Select(choices=_region_choices())
        self.site_select = forms.Select(choices=_site_choices())

    def decompress(self, value) -> tuple[str, str]:
        """(region, site) of a stored value; a region alone has no site."""
        value = value or ""
        region = site_region(value)
        return region, value if value != region else ""

    def value_from_datadict(self, data, _files, name):
        return data.get(name) or data.get(name + REGION_SUFFIX) or ""

    def value_omitted_from_data(self, data, _files, name):
        return name not in data and name + REGION_SUFFIX not in data

    def id_for_label(self, _id):
        return ""  # two lists, each with its own label; the field's label is their legend

    def render(self, name, value, attrs=None, renderer=None):
        attrs = self.build_attrs(self.attrs, attrs)
        site_id = attrs.setdefault("id", f"id_{name}")
        region_id = site_id + REGION_SUFFIX
        region, site = self.decompress(value)
        shared = {key: attrs[key] for key in ("aria-invalid", "disabled") if key in attrs}
        region_html = self.region_select.render(
            name + REGION_SUFFIX,
            region,
            {**shared, "id": region_id, "data-site-region-for": site_id},
            renderer,
        )
        site_html = self.site_select.render(name, site, attrs, renderer)
        return format_html(
            '<div class="site-picker">'
            '<div><label for="{}">Region</label>{}</div>'
            '<div><label for="{}">Site</label>{}</div>'
            "</div>",
            region_id,
            region_html,
            site_id,
            site_html,
        )
