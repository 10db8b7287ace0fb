"""Anatomic sites for people: the readable label of an ISIC site value and the tree the site
picker shows (region, then group, then site).

The stored value is always the ISIC hierarchical value (``isic_metadata.anatom_site_hierarchical``,
e.g. "Head and neck:Head:Face:Cheek"). Labels are derived from its levels, never written per
value: a level that a neighbour restates is left out ("Cheek" before "Upper cheek", "Trunk"
before "Anterior trunk"), so "Head and neck:Head:Face:Cheek:Upper cheek" reads
"Head › Face › Upper cheek".
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from isic_metadata.anatom_site_hierarchical import AnatomSiteEnum

SEPARATOR = " › "
LEVEL_SEPARATOR = ":"
_FILLER_WORDS = frozenset({"and", "of", "the"})


def _words(name: str) -> frozenset[str]:
    """The words that carry a level's meaning, singular ("Toes" and "Great toe" share "toe")."""
    words = (word.lower() for word in name.split())
    return frozenset(w[:-1] if w.endswith("s") else w for w in words if w not in _FILLER_WORDS)


def _without_restated_levels(levels: list[str]) -> list[str]:
    """The levels, less each one that its child restates or that restates its parent (the
    more specific of the two is kept)."""
    kept: list[str] = []
    for level in levels:
        if kept and (_words(kept[-1]) <= _words(level) or _words(level) <= _words(kept[-1])):
            kept[-1] = level
        else:
            kept.append(level)
    return kept


def _levels(value: str) -> list[str]:
    return value.split(LEVEL_SEPARATOR)


@cache
def site_values() -> frozenset[str]:
    return frozenset(site.value for site in AnatomSiteEnum)


@cache
def site_label(value: str) -> str:
    """The readable label of an ISIC site value; anything else (an old or unknown value, "")
    is given back as it is."""
    if value not in site_values():
        return value
    return SEPARATOR.join(_without_restated_levels(_levels(value)))


def site_region(value: str) -> str:
    """The region (the first level) of a site value: "Trunk" for "Trunk:Anterior trunk"."""
    return _levels(value)[0] if value in site_values() else ""


@dataclass(frozen=True)
class SiteGroup:
    """An ``<optgroup>``: a second-level site (e.g. "Upper extremity:Shoulder") and, in tree
    order, itself and every site under it, each labelled below the group ("Shoulder",
    "Anterior shoulder")."""

    value: str
    label: str
    region: str
    sites: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Region:
    value: str
    label: str
    groups: tuple[SiteGroup, ...]


def _children() -> dict[str, list[str]]:
    """Each value's direct children, in the standard's order (it lists parents first)."""
    children: dict[str, list[str]] = {site.value: [] for site in AnatomSiteEnum}
    for site in AnatomSiteEnum:
        if LEVEL_SEPARATOR in site.value:
            children[site.value.rsplit(LEVEL_SEPARATOR, 1)[0]].append(site.value)
    return children


def _subtree(value: str, children: dict[str, list[str]]) -> list[str]:
    return [value] + [v for child in children[value] for v in _subtree(child, children)]


def _label_in_group(value: str, group: str) -> str:
    """A site's label under its group's heading: the group's own name is not repeated."""
    below = _without_restated_levels(_levels(value)[1:])
    group_name = _levels(group)[-1]
    if len(below) > 1 and below[0] == group_name:
        below = below[1:]
    return SEPARATOR.join(below)


@cache
def site_regions() -> tuple[Region, ...]:
    """The picker's tree: the five regions, each with its groups of sites."""
    children = _children()
    regions = [site.value for site in AnatomSiteEnum if LEVEL_SEPARATOR not in site.value]
    return tuple(
        Region(
            value=region,
            label=region,
            groups=tuple(
                SiteGroup(
                    value=group,
                    label=site_label(group),
                    region=region,
                    sites=tuple((v, _label_in_group(v, group)) for v in _subtree(group, children)),
                )
                for group in children[region]
            ),
        )
        for region in regions
    )
