# Image for the web (gunicorn), migrate, worker and beat services.
# Configuration comes only from the environment at run time (see
# docker-compose.yml and deploy/README-deploy.md); nothing secret is baked in.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=config.settings \
    VAR_DIR=/app/var \
    WEB_CONCURRENCY=3
# (gunicorn takes its worker count from WEB_CONCURRENCY; override it at run time.)

WORKDIR /app

RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin app

# Dependencies first, so code changes do not invalidate this layer.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .

# collectstatic imports the settings, which refuse to load without both keys
# unless DEBUG is on. Throwaway values are passed to this step only; they are
# not kept in the image's environment. VAR_DIR points at a scratch directory
# so the build leaves nothing in /app/var. The code and staticfiles/ stay
# owned by root (read-only for the app user); only /app/var is writable.
RUN python bin/compile-messages \
 && SECRET_KEY=build-only-not-a-secret \
    ENCRYPTION_KEY=YnVpbGQtb25seS1kdW1teS1rZXktbm90LXNlY3JldCE= \
    VAR_DIR=/tmp/build-var \
    python manage.py collectstatic --noinput \
 && rm -rf /tmp/build-var \
 && mkdir -p /app/var \
 && chown app:app /app/var

USER app

EXPOSE 8000

# A worker is replaced after 100,000 requests (give or take 10,000), a guard
# against slow leaks. At collect's rates (thousands of requests a second) the
# usual 1,000 would replace a worker every second, each loading Django anew.
CMD ["gunicorn", "config.wsgi:application", \
     "--bind", "0.0.0.0:8000", \
     "--timeout", "60", \
     "--graceful-timeout", "30", \
     "--keep-alive", "5", \
     "--max-requests", "100000", \
     "--max-requests-jitter", "10000", \
     "--worker-tmp-dir", "/dev/shm", \
     "--access-logfile", "-"]
