"""Tests against real services: PostgreSQL, Redis, Celery worker processes, a live server."""
