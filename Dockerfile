# One image for every budgetq process: migrate, worker, scheduler (and the optional stand-in).
#   docker build -t budgetq .
FROM python:3.11-slim

# uv from PyPI (as CI installs it); the environment is built from uv.lock, exactly as in CI.
RUN pip install --no-cache-dir "uv>=0.13,<0.14"
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1

WORKDIR /app
# Dependencies first, so a code change does not rebuild them.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-dev --no-install-project
COPY budgetq ./budgetq
COPY scheduler ./scheduler
COPY worker ./worker
COPY migrations ./migrations
COPY alembic.ini ./
RUN uv sync --locked --no-dev

# Never run as root; beat writes its schedule file under /tmp.
RUN useradd --create-home --uid 10001 budgetq
USER budgetq
ENV BUDGETQ_DATA_DIR=/tmp/budgetq \
    BUDGETQ_LOG_FORMAT=json

EXPOSE 9100
CMD ["budgetq", "--help"]
