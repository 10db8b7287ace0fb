"""``{{ value|site_label }}``: an ISIC anatomic site value as people read it
("Head › Face › Cheek"); other text (e.g. "unknown") is shown as it is."""

from django import template

from diagnosis.sites import site_label as readable_site_label

register = template.Library()


@register.filter
def site_label(value) -> str:
    return readable_site_label(str(value or ""))
