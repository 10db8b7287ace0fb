"""Staff admin. Clinics and memberships are managed here; clinical records are read-only:
writes to them go through the services (pages and API), never through the admin."""

from django.contrib import admin
from typing_extensions import override

from diagnosis.models import AuditEvent, Case, Clinic, Lesion, Membership, Patient


class ReadOnlyAdmin(admin.ModelAdmin):
    @override
    def has_add_permission(self, request):
        return False

    @override
    def has_change_permission(self, request, obj=None):
        return False

    @override
    def has_delete_permission(self, request, obj=None):
        return False


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(Clinic)
class ClinicAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "clinic", "role", "created_at"]
    list_filter = ["role", "clinic"]
    search_fields = ["user__username", "clinic__name"]
    autocomplete_fields = ["user", "clinic"]


@admin.register(Patient)
class PatientAdmin(ReadOnlyAdmin):
    list_display = [
        "identifier",
        "clinic",
        "sex",
        "year_of_birth",
        "fitzpatrick_type",
        "created_at",
    ]
    list_filter = ["clinic", "sex", "fitzpatrick_type"]
    search_fields = ["identifier"]


@admin.register(Lesion)
class LesionAdmin(ReadOnlyAdmin):
    list_display = ["label", "patient", "clinic", "anatomic_site", "created_at"]
    list_filter = ["clinic"]
    search_fields = ["label", "patient__identifier"]


@admin.register(Case)
class CaseAdmin(ReadOnlyAdmin):
    list_display = ["pk", "clinic", "lesion", "status", "image_type", "captured_at", "created_at"]
    list_filter = ["status", "clinic", "image_type"]
    search_fields = ["lesion__patient__identifier", "image_sha256"]
    date_hierarchy = "created_at"


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The audit trail, browsable and filterable; nothing here can change or delete it."""

    list_display = ["at", "actor_username", "action", "target_type", "target_id", "clinic", "ip"]
    list_filter = ["action", "target_type", "clinic", ("at", admin.DateFieldListFilter)]
    search_fields = ["actor_username", "target_id", "ip"]
    date_hierarchy = "at"

    @override
    def get_actions(self, request):
        return {}  # not even "delete selected"
