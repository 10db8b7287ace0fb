# SkinSense production image: Django (gunicorn) web, Celery worker and Celery beat all run
# from this one image; docker-compose.yml picks the process with `command:`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=skinsense_site.settings \
    PRIVATE_MEDIA_ROOT=/data/private \
    MODEL_ROOT=/data/models \
    STATIC_ROOT=/data/static

WORKDIR /app

# Non-root runtime user. The data directories are created here, owned by that user, so that
# named volumes mounted on them start out writable by it.
RUN groupadd --system --gid 10001 skinsense \
    && useradd --system --uid 10001 --gid skinsense --home-dir /app --shell /usr/sbin/nologin skinsense \
    && mkdir -p /data/private /data/models /data/static \
    && chown -R skinsense:skinsense /data \
    && chmod 0750 /data/private /data/models

# Dependencies first, so code changes do not invalidate this (large: torch) layer.
COPY requirements.txt /app/requirements.txt
RUN pip install --no-cache-dir -r /app/requirements.txt

COPY . /app

# Static files are collected at build time. The secret below is a build-only dummy: it is never
# present at runtime (compose sets SECRET_KEY, and settings refuse to start without one).
RUN DEBUG=false SECRET_KEY=build-only-collectstatic \
        python manage.py collectstatic --noinput \
    && chown -R skinsense:skinsense /data/static

USER skinsense

EXPOSE 8000

CMD ["gunicorn", "skinsense_site.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "60"]
