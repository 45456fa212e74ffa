# relctl control plane image: `relctl up` (API + relay) by default, `relctl worker` for workers.
# Build: docker build -t relctl:latest .   (docker-compose.yml builds it for you)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# Unprivileged runtime user; /data is its state directory (also the embedded PostgreSQL's
# data when no RELCTL_DATABASE_URL is given, which refuses to run as root anyway).
RUN groupadd --system --gid 10001 relctl \
    && useradd --system --uid 10001 --gid relctl --create-home --home-dir /home/relctl relctl \
    && mkdir -p /data \
    && chown relctl:relctl /data

COPY . /src
RUN pip install --no-cache-dir /src \
    && rm -rf /src

# Listen on all interfaces inside the container (the code default is 127.0.0.1).
ENV RELCTL_DATA_DIR=/data \
    RELCTL_API_HOST=0.0.0.0 \
    RELCTL_API_PORT=8750

USER relctl
WORKDIR /home/relctl
EXPOSE 8750

CMD ["relctl", "up"]
