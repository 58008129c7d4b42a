"""The local stack side of restores into a server (issue 12), on the real local stack: Flexible-Server-like
clusters (roles, TLS, pg_hba), the staging accounts, the files layouts the emulator writes, the emulated Key Vault
read by the real ``azure-keyvault-secrets`` SDK, and the settings the stack hands to the Functions host."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pgdumplib
import pgdumplib.dump
import psycopg
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.secrets import SecretClient
from azure.storage.blob import BlobServiceClient, ContainerClient
from pgdumplib import constants as pgc

from localdev.pgcluster import find_bindir
from tests.emulator.helpers import files_target, rp_request, wait_job

from .helpers import admin, sdk

RG, VAULT = "rg-backup", "bv-prod"
BI_FLEX = "pgflex01-6f1c2d3e-0000-4000-8000-000000000002"
BI_SALES = "pgsrv01-salesdb-6f1c2d3e-0000-4000-8000-000000000001"
SUB1 = "00000000-0000-0000-0000-000000000001"
TARGET_ID = ("/subscriptions/00000000-0000-0000-0000-000000000002/resourceGroups/rg-target/providers/"
             "Microsoft.DBforPostgreSQL/flexibleServers/pgflex-target")


class StaticToken:
    """A TokenCredential that returns one fixed token (the stack's ENTRA_STATIC_TOKEN) for any scope."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


def settings(stack: Any) -> dict[str, str]:
    values: dict[str, str] = json.loads((stack.dir / "local.settings.json").read_text())["Values"]
    return values


def port_of(stack: Any, server: str) -> int:
    return int(json.loads(stack.env["RESTORE_POSTGRES_HOSTS"])[server].rsplit(":", 1)[1])


def connect(stack: Any, server: str, user: str, password: str, sslmode: str = "verify-full",
            db: str = "postgres") -> psycopg.Connection[Any]:
    return psycopg.connect(host="127.0.0.1", port=port_of(stack, server), dbname=db, user=user, password=password,
                           sslmode=sslmode, sslrootcert=stack.env["RESTORE_POSTGRES_SSLROOTCERT"], connect_timeout=10,
                           autocommit=True)


# ------------------------------------------------------------------ settings
def test_stack_env_and_host_settings_carry_the_restore_into_a_server_values(local_stack):
    env, values = local_stack.env, settings(local_stack)
    for key in ("RESTORE_STAGING", "RESTORE_STAGING_CONNECTION_STRING", "RESTORE_POSTGRES_HOSTS",
                "RESTORE_POSTGRES_SSLROOTCERT", "RESTORE_ENTRA_USER", "ENTRA_STATIC_TOKEN", "KEYVAULT_ENDPOINT",
                "KEYVAULT_CA_BUNDLE", "RESTORE_REPLAY_CLIENT_VERSION", "RESTORE_PG_BINDIR"):
        assert env[key] and values[key] == env[key], key
    staging = json.loads(env["RESTORE_STAGING"])
    acct = "/subscriptions/" + SUB1 + "/resourceGroups/rg-restore-svc/providers/Microsoft.Storage/storageAccounts/"
    assert staging == {
        "westeurope": {"container_url": "https://stpgstagingwe.blob.core.windows.net/restore-staging",
                       "container_id": acct + "stpgstagingwe/blobServices/default/containers/restore-staging",
                       "local_container": "stpgstagingwe-restore-staging"},
        "northeurope": {"container_url": "https://stpgstagingne.blob.core.windows.net/restore-staging",
                        "container_id": acct + "stpgstagingne/blobServices/default/containers/restore-staging",
                        "local_container": "stpgstagingne-restore-staging"}}
    hosts = json.loads(env["RESTORE_POSTGRES_HOSTS"])
    clusters = json.loads((local_stack.dir / "clusters.json").read_text())
    assert hosts["pgflex-target"] == f"127.0.0.1:{clusters['pgflex-target']['port']}"
    assert hosts["pgflex01"] == f"127.0.0.1:{clusters['pgflex01']['port']}"
    assert hosts["pgsrv01"] == f"127.0.0.1:{clusters['pgsrv01']['port']}"
    assert env["RESTORE_ENTRA_USER"] == "restore-service"
    assert env["KEYVAULT_ENDPOINT"] == env["DATAPROTECTION_ENDPOINT"] + "/keyvault/{vault}"
    assert env["RESTORE_REPLAY_CLIENT_VERSION"] == find_bindir().parent.name
    assert (Path(env["RESTORE_PG_BINDIR"]) / "pg_restore").exists()
    assert env["PGFLEX_ADMIN_USER"] == "pgadmin" and env["PGFLEX_ADMIN_PASSWORD"]
    for private in ("secrets/entra.token", "secrets/pg-passwords.json", "tls/ca.key", "tls/pg-server.key"):
        assert (local_stack.dir / private).stat().st_mode & 0o077 == 0, private
    for log in (local_stack.dir / "logs").rglob("*"):  # the replay executions' logs too (logs/replay/)
        if not log.is_file():
            continue
        text = log.read_text(errors="replace")
        assert env["ENTRA_STATIC_TOKEN"] not in text and env["PGFLEX_ADMIN_PASSWORD"] not in text, log


# ------------------------------------------------------------------ flexible clusters
@pytest.mark.parametrize("server", ["pgflex-target", "pgflex01"])
def test_flexible_cluster_has_azure_roles_and_a_non_superuser_admin_over_verified_tls(local_stack, server):
    env = local_stack.env
    with connect(local_stack, server, "pgadmin", env["PGFLEX_ADMIN_PASSWORD"]) as conn:
        assert conn.info.pgconn.ssl_in_use
        roles = {r[0]: r[1:] for r in conn.execute(
            "SELECT rolname, rolsuper, rolcanlogin, rolcreatedb, rolcreaterole, rolreplication FROM pg_roles "
            "WHERE rolname IN ('azure_pg_admin', 'azuresu', 'replication', 'pgadmin', 'restore-service')")}
        member_of = {r[0] for r in conn.execute(
            "SELECT m.rolname FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid "
            "JOIN pg_roles m ON m.oid = a.member WHERE r.rolname = 'azure_pg_admin'")}
    assert roles == {"azure_pg_admin": (False, False, False, False, False),
                     "azuresu": (True, False, False, False, False),
                     "replication": (False, True, False, False, True),
                     "pgadmin": (False, True, True, True, False),
                     "restore-service": (False, True, True, True, False)}
    assert member_of == {"pgadmin", "restore-service"}
    with connect(local_stack, server, "restore-service", env["ENTRA_STATIC_TOKEN"]) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("restore-service",)


def test_flexible_cluster_refuses_plain_tcp_and_wrong_passwords_but_trusts_the_local_superuser(local_stack):
    env = local_stack.env
    with pytest.raises(psycopg.OperationalError, match="no encryption|pg_hba.conf rejects"):
        connect(local_stack, "pgflex-target", "pgadmin", env["PGFLEX_ADMIN_PASSWORD"], sslmode="disable")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(local_stack, "pgflex-target", "pgadmin", "wrong-" + env["PGFLEX_ADMIN_PASSWORD"])
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(local_stack, "pgflex-target", "restore-service", env["DATAPROTECTION_TOKEN"])
    with psycopg.connect(env["PGCLUSTER_PGFLEX_TARGET_DSN"]) as conn:  # the emulator's and the tests' way in
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (True,)


def test_source_flexible_databases_are_owned_by_the_app_role_with_reader_grants(local_stack):
    with psycopg.connect(local_stack.env["PGCLUSTER_PGFLEX01_DSN"].rsplit("/", 1)[0] + "/inventory") as conn:
        assert conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'inventory'"
                            ).fetchone() == ("app_owner",)
        assert conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'items'").fetchone() == ("app_owner",)
        assert conn.execute("SELECT has_table_privilege('app_reader', 'items', 'SELECT'), "
                            "has_table_privilege('app_reader', 'items', 'INSERT')").fetchone() == (True, False)
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (50,)


# ------------------------------------------------------------------ files layouts into staging
def _restore_files(env: dict[str, str], prefix: str, bi: str = BI_FLEX) -> ContainerClient:
    client = sdk(env)
    rp = next(iter(client.recovery_points.list(RG, VAULT, bi)))
    staging = json.loads(env["RESTORE_STAGING"])["westeurope"]
    res = client.backup_instances.begin_trigger_restore(
        RG, VAULT, bi, rp_request(rp.name, files_target("stpgstagingwe", "restore-staging", prefix))).result()
    job = wait_job(client, res.job_id)
    assert job.properties.status == "Completed", job.properties.error_details
    return BlobServiceClient.from_connection_string(env["RESTORE_STAGING_CONNECTION_STRING"]) \
        .get_container_client(staging["local_container"])


def _download(container: ContainerClient, name: str, tmp: Path) -> Path:
    path = tmp / name
    path.write_bytes(container.download_blob(name).readall())
    return path


def _data_states(path: Path) -> set[int]:
    """The data-offset flags of the archive's TABLE DATA entries (K_OFFSET_POS_SET / _NOT_SET), read with
    pgdumplib's TOC reader. pgdumplib 4 reads the whole TOC, then refuses an archive without data offsets ("Unsupported
    data format") when it caches the data: the entries read before that are what we check."""
    dump = pgdumplib.dump.Dump()
    try:
        dump.load(path)
    except RuntimeError as exc:
        assert "Unsupported data format" in str(exc)
    return {e.data_state for e in dump.entries if e.desc == "TABLE DATA"}


def _listing(env: dict[str, str], path: Path) -> str:
    return subprocess.run([str(Path(env["RESTORE_PG_BINDIR"]) / "pg_restore"), "-l", str(path)],
                          capture_output=True, text=True, check=True).stdout


@pytest.fixture
def layout(local_stack):
    emu = admin(local_stack.env)
    yield lambda name: emu.set_config(files_layout=name)
    emu.set_config(files_layout="custom")


def test_custom_layout_writes_archives_with_data_offsets_and_azure_globals(local_stack, layout, tmp_path):
    env = local_stack.env
    layout("custom")
    prefix = f"lay-custom-{uuid.uuid4().hex[:8]}"
    container = _restore_files(env, prefix)
    names = sorted(b.name for b in container.list_blobs(name_starts_with=prefix))
    assert names == sorted(f"{prefix}_{f}" for f in ("appdb.sql", "inventory.sql", "roles.sql", "schema.sql",
                                                     "tablespace.sql"))
    archive = _download(container, f"{prefix}_inventory.sql", tmp_path)
    assert archive.read_bytes()[:5] == b"PGDMP"
    assert "TABLE DATA public items app_owner" in _listing(env, archive)
    assert _data_states(archive) == {pgc.K_OFFSET_POS_SET}
    roles = container.download_blob(f"{prefix}_roles.sql").readall().decode()
    for line in ("CREATE ROLE azure_pg_admin;", "CREATE ROLE azuresu;", "CREATE ROLE replication;",
                 "CREATE ROLE app_owner;", "CREATE ROLE app_reader;"):
        assert line in roles
    assert "ALTER ROLE azure_pg_admin WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION " \
           "NOBYPASSRLS;" in roles
    assert "ALTER ROLE azuresu WITH SUPERUSER" in roles
    assert "ALTER ROLE pgadmin WITH NOSUPERUSER INHERIT CREATEROLE CREATEDB LOGIN NOREPLICATION NOBYPASSRLS" in roles
    assert "GRANT azure_pg_admin TO pgadmin" in roles
    assert not container.download_blob(f"{prefix}_roles.sql").readall().startswith(b"PGDMP")


def test_custom_stream_layout_writes_archives_without_data_offsets(local_stack, layout, tmp_path):
    env = local_stack.env
    layout("custom-stream")
    prefix = f"lay-stream-{uuid.uuid4().hex[:8]}"
    container = _restore_files(env, prefix)
    archive = _download(container, f"{prefix}_inventory.sql", tmp_path)
    assert archive.read_bytes()[:5] == b"PGDMP"
    assert "TABLE DATA public items app_owner" in _listing(env, archive)
    assert _data_states(archive) == {pgc.K_OFFSET_POS_NOT_SET}
    # the same rows as the seekable archive: restore it into a scratch database and count
    scratch = f"stream_{uuid.uuid4().hex[:8]}"
    base = env["PGCLUSTER_PGFLEX_TARGET_DSN"].rsplit("/", 1)[0]
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {scratch}")
    try:
        subprocess.run([str(Path(env["RESTORE_PG_BINDIR"]) / "pg_restore"), "--no-owner", "--no-acl", "-d",
                        f"{base}/{scratch}", str(archive)], capture_output=True, text=True, check=True)
        with psycopg.connect(f"{base}/{scratch}") as conn:
            assert conn.execute("SELECT count(*) FROM items").fetchone() == (50,)
    finally:
        with psycopg.connect(base + "/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {scratch} WITH (FORCE)")


def test_plain_layout_writes_sql_scripts_for_flexible_and_single_server(local_stack, layout, tmp_path):
    env = local_stack.env
    layout("plain")
    prefix = f"lay-plain-{uuid.uuid4().hex[:8]}"
    container = _restore_files(env, prefix)
    text = container.download_blob(f"{prefix}_inventory.sql").readall()
    assert not text.startswith(b"PGDMP")
    assert b"-- PostgreSQL database dump" in text and b"COPY public.items (sku, qty) FROM stdin;" in text
    assert b"ALTER TABLE public.items OWNER TO app_owner;" in text
    assert b"GRANT SELECT ON TABLE public.items TO app_reader;" in text
    single = _restore_files(env, prefix + "-single", BI_SALES)
    assert [b.name for b in single.list_blobs(name_starts_with=prefix + "-single")] == [f"{prefix}-single.dump"]
    assert b"COPY public.orders" in single.download_blob(f"{prefix}-single.dump").readall()


def test_files_layout_is_validated_and_reported_by_the_admin_config(local_stack, layout):
    emu = admin(local_stack.env)
    assert emu.config()["files_layout"] == "custom"
    layout("plain")
    assert emu.config()["files_layout"] == "plain"
    with pytest.raises(Exception, match="files_layout.*custom-stream"):
        emu.set_config(files_layout="directory")
    assert emu.config()["files_layout"] == "plain"  # bad input changed nothing


# ------------------------------------------------------------------ Key Vault
def _kv(env: dict[str, str], vault: str = "kv-restore-we", token: str | None = None) -> SecretClient:
    return SecretClient(vault_url=env["KEYVAULT_ENDPOINT"].format(vault=vault),
                        credential=StaticToken(token or env["ENTRA_STATIC_TOKEN"]),
                        verify_challenge_resource=False, connection_verify=env["KEYVAULT_CA_BUNDLE"])


def test_keyvault_sdk_reads_the_target_connection_secret_and_it_connects_with_verify_full(local_stack):
    env = local_stack.env
    cred = StaticToken(env["ENTRA_STATIC_TOKEN"])
    client = SecretClient(vault_url=env["KEYVAULT_ENDPOINT"].format(vault="kv-restore-we"), credential=cred,
                          verify_challenge_resource=False, connection_verify=env["KEYVAULT_CA_BUNDLE"])
    secret = client.get_secret("pgflex-target-conn")
    assert cred.scopes == [("https://vault.azure.net/.default",)]  # from the 401 challenge's resource
    assert secret.name == "pgflex-target-conn" and len(secret.properties.version) == 32
    assert secret.id == f"https://kv-restore-we.vault.azure.net/secrets/pgflex-target-conn/{secret.properties.version}"
    value = secret.value
    assert value == (f"postgresql://pgadmin:{env['PGFLEX_ADMIN_PASSWORD']}@127.0.0.1:"
                     f"{port_of(local_stack, 'pgflex-target')}/postgres?sslmode=verify-full")
    with psycopg.connect(value, sslrootcert=env["RESTORE_POSTGRES_SSLROOTCERT"]) as conn:
        assert conn.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
                            ).fetchone() == ("pgadmin", False)
    assert client.get_secret("pgflex-target-conn", secret.properties.version).value == value


def test_keyvault_missing_secret_is_not_found_and_a_wrong_token_is_forbidden(local_stack):
    env = local_stack.env
    with pytest.raises(ResourceNotFoundError, match="SecretNotFound"):
        _kv(env).get_secret("no-such-secret")
    with pytest.raises(ResourceNotFoundError, match="SecretNotFound"):
        _kv(env).get_secret("pgflex-target-conn", "0" * 32)
    with pytest.raises(HttpResponseError) as err:
        _kv(env, token="not-the-entra-token").get_secret("pgflex-target-conn")
    assert err.value.status_code == 403 and "Forbidden" in str(err.value)


def test_keyvault_admin_put_makes_a_new_current_version_and_delete_removes_the_secret(local_stack):
    env, emu = local_stack.env, admin(local_stack.env)
    name = f"tmp-{uuid.uuid4().hex[:8]}"
    first = emu.put_secret("kv-restore-we", name, "host=127.0.0.1 port=1 user=a password=b")
    second = emu.put_secret("kv-restore-we", name, "Server=127.0.0.1;Port=2;User Id=a;Password=c;")
    assert _kv(env).get_secret(name).value == "Server=127.0.0.1;Port=2;User Id=a;Password=c;"
    assert _kv(env).get_secret(name, first["version"]).value == "host=127.0.0.1 port=1 user=a password=b"
    assert _kv(env).get_secret(name).properties.version == second["version"]
    assert emu.secrets()[f"https://kv-restore-we.vault.azure.net/secrets/{name}"] == 2
    assert emu.delete_secret("kv-restore-we", name) is True
    with pytest.raises(ResourceNotFoundError):
        _kv(env).get_secret(name)
    with pytest.raises(Exception, match="not in the world's key_vaults"):
        emu.put_secret("kv-nowhere", name, "x")
