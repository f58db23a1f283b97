# syntax=docker/dockerfile:1
# iofold: one image for the web server, the Celery worker and Celery beat (compose.yaml).

# --- build: compile wheels into a virtualenv, away from the runtime image ---------------
FROM python:3.12-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential libpq-dev \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt

# --- runtime -------------------------------------------------------------------------
FROM python:3.12-slim-bookworm AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    DJANGO_SETTINGS_MODULE=iofold.settings \
    IOFOLD_VAR_DIR=/var/lib/iofold \
    STATIC_ROOT=/app/staticfiles
# libnl-route-3-200 and libprotobuf32: shared libraries the nsjail binary links against.
# python3 (Debian's, at /usr/bin/python3): the interpreter the in-jail harness runs under,
# outside any virtualenv so the jail can mount it read-only with nothing else.
# libpq5: psycopg's runtime library. tini: reaps children and forwards signals to Celery.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libnl-route-3-200 libprotobuf32 python3 libpq5 tini \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 iofold \
 && useradd --system --uid 10001 --gid iofold --home-dir /app --shell /usr/sbin/nologin iofold \
 && mkdir -p /app /var/lib/iofold \
 && chown iofold:iofold /var/lib/iofold
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Code stays root-owned: the app user can read it but not change it.
COPY . /app
# Static files are collected at build time with throwaway secrets: collectstatic needs the
# production settings to load, never the real keys.
RUN SECRET_KEY=collectstatic-only-not-a-secret \
    IOFOLD_ENCRYPTION_KEYS="$(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')" \
    DEBUG=false ALLOWED_HOSTS=localhost \
    python manage.py collectstatic --noinput -v0
USER iofold
EXPOSE 8000
ENTRYPOINT ["/usr/bin/tini", "--"]
# iofold/gunicorn_conf.py: gthread workers and threads from the CPU count; WEB_CONCURRENCY
# (workers) and WEB_THREADS (threads per worker) override them.
CMD ["gunicorn", "iofold.wsgi:application", "--config", "python:iofold.gunicorn_conf"]
