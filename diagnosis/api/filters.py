"""Bounded integer filters: a query value the database cannot hold is a 400, never a 500.

SQLite stores 64-bit integers (a larger Python int raises ``OverflowError`` in the driver) and
PostgreSQL's ``bigint`` ids have the same range. django-filter's ``NumberFilter`` accepts any
decimal (``-4.7e148``) and Django guards only exact lookups on the primary key itself, not
lookups through a relation (``lesion__patient``) or on a foreign key's column. So every integer
filter here is an ``IdFilter`` (1 ... 2**63 - 1) or a ``BoundedIntegerFilter`` (the column's
range), and filters generated from ``filterset_fields`` use them too (``FilterSet`` below).
"""

from __future__ import annotations

import datetime

from django import forms
from django.db import connection, models
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema_field
from rest_framework.exceptions import ValidationError

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

ID_SCHEMA = {"type": "integer", "format": "int64", "minimum": 1, "maximum": INT64_MAX}


class BoundedIntegerFilter(filters.NumberFilter):
    """An integer within ``min_value``..``max_value`` (by default 64 bits): a decimal, an
    exponent or a number out of range is a 400 with the form's message."""

    field_class = forms.IntegerField

    def __init__(self, *args, min_value=INT64_MIN, max_value=INT64_MAX, **kwargs):
        kwargs.setdefault("min_value", min_value)
        kwargs.setdefault("max_value", max_value)
        super().__init__(*args, **kwargs)


@extend_schema_field(ID_SCHEMA)
class IdFilter(BoundedIntegerFilter):
    """An object id (a primary or foreign key): 1 ... 2**63 - 1."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        super().__init__(*args, **kwargs)


def column_range(model_field: models.Field) -> tuple[int, int]:
    """The integer range the database column holds (64 bits where the backend says nothing)."""
    low, high = connection.ops.integer_field_range(model_field.get_internal_type())
    return (INT64_MIN if low is None else low, INT64_MAX if high is None else high)


def _bounded_integer(model_field):
    low, high = column_range(model_field)
    return {"min_value": low, "max_value": high}


class FilterSet(filters.FilterSet):
    """django-filter's FilterSet with integer model fields filtered in their column's range."""

    FILTER_DEFAULTS = {
        **filters.FilterSet.FILTER_DEFAULTS,
        **{
            field_class: {"filter_class": BoundedIntegerFilter, "extra": _bounded_integer}
            for field_class in (
                models.IntegerField,
                models.SmallIntegerField,
                models.BigIntegerField,
                models.PositiveIntegerField,
                models.PositiveSmallIntegerField,
                models.PositiveBigIntegerField,
                models.AutoField,
                models.BigAutoField,
                models.SmallAutoField,
            )
        },
    }


class DjangoFilterBackend(filters.DjangoFilterBackend):
    """Filters generated from ``filterset_fields`` use the bounded FilterSet."""

    filterset_base = FilterSet


class UTCDateTimeFilter(filters.IsoDateTimeFilter):
    """An ISO 8601 date-time in any offset, compared in UTC (the database may refuse unusual
    offsets); one out of range is a 400, not a server error."""

    def filter(self, qs, value):
        if value is not None:
            try:
                value = value.astimezone(datetime.UTC)
            except (OverflowError, ValueError):
                raise ValidationError({self.field_name: "This date-time is out of range."})
        return super().filter(qs, value)
