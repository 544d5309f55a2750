# One image for every process of docker-compose.yml: web, worker, beat, migrate (and any `newsletter` command).
# The dependencies are requirements.lock: the versions CI tested, each file checked against its sha256
# (scripts/lock writes it). The package is this tree, installed without resolving anything again.
# No test tools, no compiler, no pip cache; runs as an unprivileged user. Health checks live in the compose
# file, per service: the same image serves HTTP in one container and consumes the queue in another.
#   docker build -t newsletter-pipeline .
#   docker run --rm newsletter-pipeline newsletter demo     (the embedded demo: SQLite and a file outbox)

# a patch release of the Python CI tests (3.11) on Debian 12; bump it with the lock, not on its own
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
# the lock alone first: this layer is rebuilt when a dependency changes, not when the code does
COPY requirements.lock /tmp/requirements.lock
RUN /opt/venv/bin/pip install --no-cache-dir --require-hashes --only-binary :all: -r /tmp/requirements.lock
COPY pyproject.toml README.md /src/
COPY mailer /src/mailer
COPY subscribers /src/subscribers
COPY templates /src/templates
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps /src

FROM ${PYTHON_IMAGE}
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home --shell /usr/sbin/nologin newsletter \
    && mkdir -p /app /data \
    && chown newsletter:newsletter /data
COPY --from=build /opt/venv /opt/venv
# the Celery app is in the package: `celery -A mailer.worker worker` (worker.py is a checkout's shortcut)
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NEWSLETTER_DATA_DIR=/data
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8000
CMD ["newsletter", "--help"]
