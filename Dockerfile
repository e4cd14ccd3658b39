# DevBench platform image: the web server (scripts/serve), Celery workers and beat share
# it; only the command differs (docker-compose.yml). Workspace images are separate
# (scripts/build-images). Builds with the classic builder (Debian's docker.io).
#
# BASE_IMAGE: a Debian 12 with Python 3.11 and venv; the default is the public image.
# Wheels in wheelhouse/ are used first (scripts/build-platform-image downloads them
# on the host, so the build itself needs no network: PIP_INSTALL_ARGS=--no-index).
ARG BASE_IMAGE=python:3.11-slim-bookworm

# --- build: a virtualenv with the pinned requirements, and the static files -----------
FROM ${BASE_IMAGE} AS build
# scripts/build-platform-image tags this stage (the cache of the next build) and removes
# the stages it replaced, which the classic builder would leave behind untagged.
LABEL org.devbench.build-stage=platform
ARG PIP_INSTALL_ARGS=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/devbench
# Requirements before the source: a code change reuses the installed layer.
COPY requirements/base.txt /tmp/requirements.txt
COPY wheelhouse/ /tmp/wheels/
# shellcheck disable=SC2086
RUN /opt/devbench/bin/pip install --find-links /tmp/wheels ${PIP_INSTALL_ARGS} \
        -r /tmp/requirements.txt \
    && /opt/devbench/bin/python -m compileall -q /opt/devbench/lib
COPY . /app
RUN cd /app \
    && DATABASE_URL= REDIS_URL= DEVBENCH_VAR_DIR=/tmp/build STATIC_ROOT=/app/staticfiles \
       /opt/devbench/bin/python manage.py collectstatic --noinput -v0 \
    && rm -rf /tmp/build /app/wheelhouse

# --- runtime: the same base, the virtualenv and the app, a non-root user --------------
FROM ${BASE_IMAGE} AS runtime
ENV PATH=/opt/devbench/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 LANG=C.UTF-8 \
    STATIC_ROOT=/app/staticfiles DEVBENCH_VAR_DIR=/app/var \
    DEVBENCH_HOST=0.0.0.0 DEVBENCH_PORT=8000
RUN groupadd --system --gid 10001 devbench \
    && useradd --system --uid 10001 --gid devbench --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin devbench
COPY --from=build /opt/devbench /opt/devbench
COPY --from=build /app /app
RUN install -d -o devbench -g devbench -m 0750 /app/var \
    && install -d -o devbench -g devbench -m 0700 /run/devbench-agent
WORKDIR /app
USER devbench
EXPOSE 8000
# The web server's probe (compose turns it off for the worker and beat).
HEALTHCHECK --interval=30s --timeout=3s \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['DEVBENCH_PORT'], timeout=2)"]
CMD ["scripts/serve"]
