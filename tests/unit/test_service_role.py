"""The service's role's name, checked before `db migrate` touches anything
(learner_export.db.role): what can be a role's name, and the sentences that say why not."""

from __future__ import annotations

import pytest

from learner_export.db import role
from learner_export.errors import ServiceRoleInvalid, ServiceRoleRefused, kind_of


@pytest.mark.parametrize(
    "name",
    ["learner_export_service_staging", 'we"ird; name', "Élève rôle", "x" * 63, "é" * 31],
)
def test_any_name_postgresql_keeps_whole_may_be_the_role(name: str) -> None:
    assert role.invalid(name) is None


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("", "needs a name"),
        ("   ", "needs a name"),
        ("x" * 64, "is 64 bytes long: PostgreSQL would cut it to 63"),
        ("é" * 32, "is 64 bytes long"),
        ("a\x00b", "holds a NUL character"),
        ("pg_monitor", "reserved"),
        ("PUBLIC", "reserved"),
        ("service_role", "one of the API roles"),
        ("authenticator", "one of the API roles"),
    ],
)
def test_a_name_that_cannot_be_a_role_says_why_in_one_line(name: str, says: str) -> None:
    why = role.invalid(name)
    assert why is not None and says in why
    assert "\n" not in why


def test_the_suggested_name_needs_no_quotes_and_fits() -> None:
    assert role.suggestion("production") == "learner_export_service_production"
    assert role.suggestion("Tenant-42 (EU)") == "learner_export_service_tenant_42_eu"
    assert role.suggestion("---") == "learner_export_service_db"
    assert len(role.suggestion("d" * 63).encode()) == role.MAX_BYTES
    assert role.invalid(role.suggestion("d" * 63)) is None


def test_the_shared_role_sentence_names_the_databases_and_the_way_out() -> None:
    said = role.shared_sentence("learner_export_service", ["staging"], "production")
    assert said == (
        "the service's role learner_export_service already holds privileges or owns objects in "
        "the database staging of this server, and a role is the whole server's (a login granted "
        "it here would reach the export functions there too): choose a name of this database's "
        "own, e.g. `learner-export db migrate --service-role learner_export_service_production`"
    )
    many = role.shared_sentence("r", [f"db{i}" for i in range(7)], "x")
    assert "the databases db0, db1, db2, db3, db4 and 2 more of this server" in many


def test_exit_codes_a_bad_name_is_2_a_shared_role_is_1() -> None:
    assert kind_of(ServiceRoleInvalid("x")).exit_code == 2
    assert kind_of(ServiceRoleRefused("x")).exit_code == 1
