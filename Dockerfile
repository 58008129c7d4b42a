# Image of the replay job (Azure Container Apps, event-driven on the restore-replay queue; infra/modules/container-apps.bicep).
# The newest PostgreSQL client from the PostgreSQL project's own Debian repository (apt.postgresql.org, "PGDG"): an
# older pg_restore cannot read archives written by a newer pg_dump. Its major version is RESTORE_REPLAY_CLIENT_VERSION
# and its bindir RESTORE_PG_BINDIR in infra/main.bicep (tests/infra/test_replay_image.py ties them together).
# Built by `azd deploy` (service replay in azure.yaml); docs/deploy.md "Restore into a server".

# Python as the Function App (3.11); Debian bookworm, the PGDG suite below must name the same release.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# PGDG repository as documented on https://wiki.postgresql.org/wiki/Apt (manual setup): the signing key in
# /usr/share/postgresql-common/pgdg and a signed-by source for <codename>-pgdg.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl; \
    install -d /usr/share/postgresql-common/pgdg; \
    curl -fsSL -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc https://www.postgresql.org/media/keys/ACCC4CF8.asc; \
    echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt bookworm-pgdg main" \
        > /etc/apt/sources.list.d/pgdg.list; \
    apt-get update; \
    apt-get install -y --no-install-recommends postgresql-client-18; \
    apt-get purge -y --auto-remove curl; \
    rm -rf /var/lib/apt/lists/*; \
    /usr/lib/postgresql/18/bin/pg_restore --version

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY restore_core ./restore_core

# Non-root; RESTORE_REPLAY_WORKDIR (/mnt/replay) is writable by it (an Azure Files share may be mounted over it with
# uid/gid 10001 in its mount options).
RUN set -eux; \
    groupadd --gid 10001 replay; \
    useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin replay; \
    install -d -o 10001 -g 10001 -m 0700 /mnt/replay
USER 10001:10001

ENTRYPOINT ["python", "-m", "restore_core.replay"]
