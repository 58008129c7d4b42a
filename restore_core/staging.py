"""Staging containers: where the vault restores the files of a restore into a server, and where the service reads them.

Consumes: ``RESTORE_STAGING`` (JSON ``{region: {"container_url", "container_id", "local_container"?}}``; one
container per region that vaults restore into: the vault's region and, for Cross Region Restore, its pair).
Produces: :class:`StagingSite` per region (what the vault is asked to write to) and the port :class:`StagingArea`
(what the stages read, write and delete under a restore's own prefix). The Azure adapter
(:class:`BlobStagingArea`) uses azure-storage-blob with the service identity (or, locally, a connection string);
:mod:`restore_core.runtime` builds it.

Layout inside a staging container, per restore ``<id>``: the vault's files, named by Azure from the file prefix,
which is the restore id (``<id>.dump``, ``<id>_<db>.sql``, ``<id>_roles.sql``, …); ``_plans/<id>.json`` the replay
plan written by inventory. Nothing but blobs named ``<id>.*``, ``<id>_*`` and ``_plans/<id>.json`` is ever read or
deleted for a restore (restore ids have a fixed length, so no other restore's names start with ``<id>.`` or
``<id>_``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit


def plan_blob(restore_id: str) -> str:
    return f"_plans/{restore_id}.json"


def owned_by(name: str, restore_id: str) -> bool:
    """Whether a staged blob is one of this restore's files."""
    return name.startswith((restore_id + ".", restore_id + "_"))


class StagingConfigError(ValueError):
    """``RESTORE_STAGING`` is malformed; the message says what to change."""


@dataclass(frozen=True)
class StagingSite:
    region: str
    container_url: str
    container_id: str | None = None
    local_container: str | None = None

    @property
    def container_name(self) -> str:
        return self.local_container or urlsplit(self.container_url).path.strip("/")

    @property
    def account_url(self) -> str:
        u = urlsplit(self.container_url)
        return f"{u.scheme}://{u.netloc}"

    def describe(self, prefix: str) -> dict[str, Any]:
        return {"region": self.region, "container_url": self.container_url, "container_id": self.container_id,
                "prefix": prefix}


def parse_sites(raw: Mapping[str, Any]) -> dict[str, StagingSite]:
    sites: dict[str, StagingSite] = {}
    for region, value in raw.items():
        if not isinstance(value, dict) or not isinstance(value.get("container_url"), str):
            raise StagingConfigError(f"RESTORE_STAGING[{region!r}] must be an object with container_url (https://"
                                     "{account}.blob.core.windows.net/{container}) and container_id")
        u = urlsplit(value["container_url"])
        if u.scheme != "https" or not u.hostname or len(u.path.strip("/").split("/")) != 1 or u.query:
            raise StagingConfigError(f"RESTORE_STAGING[{region!r}].container_url must be https://{{account}}.blob."
                                     "core.windows.net/{container} without SAS or path")
        sites[region.lower().replace(" ", "")] = StagingSite(
            region.lower(), value["container_url"].rstrip("/"), value.get("container_id") or None,
            value.get("local_container") or None)
    return sites


@dataclass(frozen=True)
class StagedBlob:
    name: str
    size: int


class StagingArea(Protocol):
    """One staging container, seen by the service."""

    def files(self, prefix: str) -> list[StagedBlob]: ...

    def read_range(self, name: str, start: int, length: int) -> bytes: ...

    def download_to(self, name: str, path: Path) -> int: ...

    def chunks(self, name: str) -> Iterator[bytes]:
        """The blob's bytes in order, a bounded chunk at a time (the replay streams them into pg_restore)."""
        ...

    def put_json(self, name: str, value: dict[str, Any]) -> None: ...

    def get_json(self, name: str) -> dict[str, Any] | None: ...

    def delete(self, names: list[str]) -> int: ...


class BlobStagingArea:
    """:class:`StagingArea` over an azure-storage-blob ``ContainerClient``."""

    def __init__(self, container: Any) -> None:
        self._c = container

    def files(self, prefix: str) -> list[StagedBlob]:
        return [StagedBlob(b.name, int(b.size or 0)) for b in self._c.list_blobs(name_starts_with=prefix)]

    def read_range(self, name: str, start: int, length: int) -> bytes:
        data: bytes = self._c.download_blob(name, offset=start, length=length).readall()
        return data

    def download_to(self, name: str, path: Path) -> int:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            return int(self._c.download_blob(name, max_concurrency=4).readinto(fh))

    def chunks(self, name: str) -> Iterator[bytes]:
        # one request at a time: the first of up to 32 MiB, then 4 MiB each (the SDK's default get sizes); the
        # SDK retries a broken chunk itself, an error past its retries is raised to the caller
        yield from self._c.download_blob(name, max_concurrency=1).chunks()

    def put_json(self, name: str, value: dict[str, Any]) -> None:
        self._c.upload_blob(name, json.dumps(value, sort_keys=True).encode(), overwrite=True)

    def get_json(self, name: str) -> dict[str, Any] | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            data: dict[str, Any] = json.loads(self._c.download_blob(name).readall())
        except ResourceNotFoundError:
            return None
        return data

    def delete(self, names: list[str]) -> int:
        """Delete these blobs (a missing one counts as deleted: a second clean-up is a no-op)."""
        for chunk in _chunks(names, 256):
            self._c.delete_blobs(*chunk, raise_on_any_failure=False)
        return len(names)


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
