# DevBench platform image (web, worker and beat share it; the command differs).
# Workspace images are separate: see scripts/build-images.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

RUN groupadd --system devbench && useradd --system --gid devbench --home /app devbench

COPY requirements/ requirements/
RUN pip install --no-cache-dir -r requirements/base.txt

COPY . .
RUN DATABASE_URL= REDIS_URL= DEVBENCH_VAR_DIR=/tmp/build python manage.py collectstatic --noinput -v0 \
    && rm -rf /tmp/build && mkdir -p /app/var && chown devbench:devbench /app/var

USER devbench
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)" || exit 1
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "devbench_site.asgi:application"]
