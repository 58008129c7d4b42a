"""Local emulator of the Microsoft.DataProtection (Backup vault) ARM API for Azure Database for PostgreSQL restores.

Consumes: a world file (``localdev/worlds/*.yaml``), a clusters file written by the stack manager, Azurite.
Produces: an HTTPS server on loopback that the real ``azure-mgmt-dataprotection`` SDK talks to, doing real
``pg_dump``/``pg_restore`` work, plus an admin API (``/admin``) for faults, metering, throttling and time.
Run: ``python -m localdev.dpemu --help``. Reference: ``docs/emulator.md``.
"""
