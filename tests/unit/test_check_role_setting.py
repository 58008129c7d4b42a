"""RESTORE_CHECK_ROLE (issue 15 item 2): the read-only role user checks run as; a name that could be a platform or
predefined role is refused at start-up, saying what to change."""

from __future__ import annotations

import pytest

from restore_core.config import SettingsError

from .fakes import settings


def test_the_checks_role_defaults_to_restore_checks_and_takes_an_ordinary_name() -> None:
    assert settings().server.check_role == "restore_checks"
    assert settings(RESTORE_CHECK_ROLE="drill_reader").server.check_role == "drill_reader"
    assert settings(RESTORE_CHECK_ROLE="").server.check_role == "restore_checks"  # the Bicep's empty = default


@pytest.mark.parametrize("name", ["pg_read_all_data", "azure_pg_admin", "azuresu", "postgres", "public",
                                  "Readers", "a-b", "x" * 64])
def test_a_checks_role_that_is_not_a_new_ordinary_name_is_refused(name: str) -> None:
    with pytest.raises(SettingsError, match="RESTORE_CHECK_ROLE"):
        settings(RESTORE_CHECK_ROLE=name)
