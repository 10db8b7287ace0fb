"""On PostgreSQL, refuse UPDATE and DELETE of audit events in the database itself."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION diagnosis_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER diagnosis_auditevent_append_only
    BEFORE UPDATE OR DELETE ON diagnosis_auditevent
    FOR EACH ROW EXECUTE FUNCTION diagnosis_auditevent_append_only();
"""
DROP = """
DROP TRIGGER IF EXISTS diagnosis_auditevent_append_only ON diagnosis_auditevent;
DROP FUNCTION IF EXISTS diagnosis_auditevent_append_only();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("diagnosis", "0002_auditevent")]
    operations = [migrations.RunPython(forwards, backwards)]
