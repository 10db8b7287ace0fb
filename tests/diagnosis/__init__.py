"""Tests of the clinical records app: records, uploads, audit, webhooks, its API."""
