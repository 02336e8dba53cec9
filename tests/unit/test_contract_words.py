"""The operator's words and the contract's rules about the keyset, as pure code: which column
is the keyset's time column, which HTTP aliases the words give, where they show."""

from __future__ import annotations

from datetime import UTC, datetime

from learner_export.contract import Contract, FunctionInfo, Words, _problems_of
from learner_export.contract.columns import Column, Kind
from learner_export.contract.guard import page_query
from learner_export.filenames import export_filename
from learner_export.params import BY_NAME, aliases, parse_export_params

WORDS = Words("joined_at", "organisation", "organisations")
ORG = "6f1c1a52-0000-4000-8000-000000000001"


def _function(name: str, outputs: tuple[tuple[str, str, str], ...] = ()) -> FunctionInfo:
    return FunctionInfo(
        name=name,
        oid=1,
        security_definer=True,
        config=("search_path=",),
        returns_set=bool(outputs),
        return_type="record" if outputs else "text",
        inputs=(),
        outputs=outputs,
        executors=(),
        owner="postgres",
    )


def test_the_keyset_time_column_is_the_one_page_ends_names() -> None:
    ends = _function(
        "learner_export_page_ends",
        (("joined_at", "timestamp with time zone", "timestamptz"), ("learner_id", "uuid", "uuid")),
    )
    problems, _, words = _problems_of({"learner_export_page_ends": [ends]})
    assert words.time_column == "joined_at"
    assert not [p for p in problems if "must RETURN TABLE (<your keyset" in p]


def test_a_page_ends_function_without_a_time_column_is_named() -> None:
    ends = _function(
        "learner_export_page_ends", (("joined_at", "text", "text"), ("learner_id", "uuid", "uuid"))
    )
    problems, _, words = _problems_of({"learner_export_page_ends": [ends]})
    assert words.time_column == "created_at"
    assert any("returns (joined_at text, learner_id ...)" in p for p in problems)


def test_aliases_in_the_operators_words() -> None:
    assert aliases(WORDS) == {
        "organisation_id": "client_id",
        "joined_from": "created_from",
        "joined_to": "created_to",
    }
    assert aliases(Words()) == {}  # the service's own words need none
    assert aliases(Words("created", "Cohort group", "Cohort groups"))["cohort_group_id"] == (
        "client_id"
    )


def test_aliases_parse_as_the_stable_names() -> None:
    contract = Contract((Column("joined_at", Kind.TIMESTAMPTZ, "timestamptz"),), WORDS, "1,2")
    by_alias = parse_export_params(
        [("organisation_id", ORG), ("joined_from", "2024-01-01"), ("joined_to", "2025-01-01")],
        contract,
        time_zones=frozenset({"UTC"}),
    )
    by_name = parse_export_params(
        [("client_id", ORG), ("created_from", "2024-01-01"), ("created_to", "2025-01-01")],
        contract,
        time_zones=frozenset({"UTC"}),
    )
    assert by_alias == by_name
    assert by_alias.client_ids == (ORG,)
    assert by_alias.created_from == datetime(2024, 1, 1, tzinfo=UTC)
    assert by_alias.contract_version == "1,2"
    assert by_alias.filters()["scope_unit"] == "organisation"
    assert by_alias.filters()["keyset"] == "joined_at"


def test_descriptions_in_the_operators_words() -> None:
    assert BY_NAME["created_from"].describe(WORDS).startswith("joined_at on or after")
    assert "also `joined_from`" in BY_NAME["created_from"].describe(WORDS)
    assert "organisations" in BY_NAME["client_id"].describe(WORDS)
    assert BY_NAME["created_from"].description.startswith("created_at on or after")
    assert "{" not in BY_NAME["client_id"].description


def test_file_names_in_the_operators_words() -> None:
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    common = {"created_from": None, "created_to": None, "active": None, "now": now}
    one = export_filename("csv", client_ids=[ORG], unit="organisation", **common)
    assert one == (f"learners-organisation-{ORG[:8]}-20261206T120000Z.csv",) * 2
    two = export_filename("csv", client_ids=[ORG, ORG], units="cohorts", **common)
    assert two[0] == "learners-2-cohorts-20261206T120000Z.csv"
    # A word that is no file name is made one; the default stays the service's.
    odd = export_filename("csv", client_ids=[ORG, ORG], units='a/b "c"', **common)
    assert odd[0] == "learners-2-a-b--c-20261206T120000Z.csv"
    assert export_filename("csv", client_ids=[ORG, ORG], **common)[0].startswith(
        "learners-2-clients-"
    )


def test_the_guarded_page_query_reads_the_adapters_time_column() -> None:
    sql = page_query(
        "r.learner_id",
        'joined "at"',
        "$1, $2",
        after=("$3", "$4"),
        page_size="$5",
        end=("$6", "$7"),
    )
    assert 'r."joined ""at""" AS _key_at' in sql
    assert 'pg_catalog.lag(r."joined ""at""", 1, $3) OVER w' in sql
    assert "learner_export.get_learner_export_batch($1, $2) AS r WINDOW w AS ()" in sql
    assert "THEN learner_export.keyset_breach(" in sql
