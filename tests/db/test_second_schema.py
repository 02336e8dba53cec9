"""A second, Supabase-shaped schema with the shipped Supabase adapter
(learner_export/sql/adapters/supabase.sql), its own columns and its own words (joined_at,
organization): the service exports it with no Python change (tests/schemas/supabase_like.sql)."""

from __future__ import annotations

import csv
import hashlib
import io
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import openpyxl
import orjson
import pyarrow.parquet as pq
import pytest

from learner_export import db, sql
from learner_export.config import Settings
from learner_export.db.migrate import migrate
from tests.conftest import (
    SERVICE_LOGIN_SQL,
    Database,
    LiveServer,
    _admin,
    _with_database,
    query,
    run,
    service_role_of,
)

HERE = Path(__file__).resolve().parents[1]
COLUMNS = [
    "learner_id",
    "display_name",
    "email",
    "organization_id",
    "organization_name",
    "joined_at",
    "last_sign_in_at",
    "enrolled_on",
    "score",
    "completed_courses",
    "is_active",
]
ADMIN = str(uuid.UUID(hashlib.md5(b"user/1201").hexdigest()))
STAFF = str(uuid.UUID(hashlib.md5(b"user/1202").hexdigest()))

# What the adapter should give, computed independently of it.
EXPECTED_SQL = """
SELECT p.id::text AS learner_id, p.display_name, u.email,
       p.client_id::text AS organization_id, o.title AS organization_name,
       p.created_at AS joined_at, u.last_sign_in_at, p.enrolled_on,
       (SELECT avg(c.score) FROM public.course_progress c WHERE c.profile_id = p.id) AS score,
       (SELECT count(*) FROM public.course_progress c WHERE c.profile_id = p.id
                                                       AND c.completed) AS completed_courses,
       p.is_active
  FROM public.profiles p JOIN auth.users u ON u.id = p.id
  LEFT JOIN public.organizations o ON o.id = p.client_id
 WHERE p.role = 'student' {where}
 ORDER BY p.created_at, p.id
"""


async def _migrate(url: str) -> None:
    conn = await db.connect(Settings(database_url=url), url)
    try:
        await migrate(conn, Path(str(sql.SUPABASE_ADAPTER)), service_role=service_role_of(url))
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def other(pg_server: str) -> Iterator[Database]:
    name = f"learner_export_other_{uuid.uuid4().hex[:12]}"
    run(_admin(pg_server, f'CREATE DATABASE "{name}"'))
    url = _with_database(pg_server, name)
    try:
        run(_admin(url, (HERE / "schemas" / "supabase_like.sql").read_text()))
        run(_migrate(url))
        run(_admin(url, SERVICE_LOGIN_SQL))
        yield Database(url, ADMIN)
    finally:
        run(_admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        run(_admin(pg_server, f'DROP ROLE IF EXISTS "{service_role_of(url)}"'))


@pytest.fixture(scope="module")
def server(other: Database, start_server: Callable[..., LiveServer]) -> LiveServer:
    return start_server(db=other, page_size=97, first_page_size=13)


def expected(url: str, where: str = "") -> list[dict[str, object]]:
    return [dict(r) for r in query(url, EXPECTED_SQL.format(where=where))]


def get(
    server: LiveServer, token: str | None = None, **params: str
) -> tuple[int, bytes, dict[str, str]]:
    with server.client() as client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        prefer = params.pop("prefer", None)
        if prefer:
            headers["Prefer"] = prefer
        r = client.get("/v1/exports/learners", params=params, headers=headers)
        return r.status_code, r.content, dict(r.headers)


def test_csv_header_and_rows_follow_the_adapter(server: LiveServer, other: Database) -> None:
    status, body, _ = get(server, format="csv", escape_formulas="false")
    assert status == 200
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0] == COLUMNS
    want = expected(other.url)
    assert len(rows) - 1 == len(want) == 1200
    assert [r[0] for r in rows[1:]] == [w["learner_id"] for w in want]
    assert len({r[0] for r in rows[1:]}) == 1200  # keyset across five-way created_at ties
    assert [r[1] for r in rows[1:]] == [w["display_name"] for w in want]
    assert [r[9] for r in rows[1:]] == [str(w["completed_courses"]) for w in want]


def test_jsonl_types(server: LiveServer, other: Database) -> None:
    status, body, _ = get(server, format="jsonl")
    assert status == 200
    got = [orjson.loads(line) for line in body.splitlines()]
    want = expected(other.url)
    assert list(got[0]) == COLUMNS
    for g, w in zip(got, want, strict=True):
        assert g["learner_id"] == w["learner_id"]
        assert g["enrolled_on"] == (
            w["enrolled_on"].isoformat()  # type: ignore[attr-defined]
            if w["enrolled_on"]
            else None
        )
        if w["score"] is None:
            assert g["score"] is None
        else:
            assert isinstance(g["score"], int | float)
            assert Decimal(str(g["score"])) == pytest.approx(w["score"])
        assert g["completed_courses"] == w["completed_courses"]
        assert g["is_active"] is w["is_active"]


def test_xlsx_and_parquet_open_with_their_readers(server: LiveServer, other: Database) -> None:
    want = expected(other.url)
    status, body, _ = get(server, format="xlsx")
    assert status == 200
    sheet = openpyxl.load_workbook(io.BytesIO(body), read_only=True).worksheets[0]
    cells = list(sheet.iter_rows(values_only=True))
    assert list(cells[0]) == COLUMNS
    assert [c[0] for c in cells[1:]] == [w["learner_id"] for w in want]
    assert [c[10] for c in cells[1:]] == [w["is_active"] for w in want]

    status, body, _ = get(server, format="parquet")
    assert status == 200
    table = pq.read_table(io.BytesIO(body))
    assert table.column_names == COLUMNS
    types = {f.name: str(f.type) for f in table.schema}
    assert types["enrolled_on"] == "date32[day]"
    assert types["is_active"] == "bool"
    assert types["completed_courses"] == "int64"
    assert table.column("learner_id").to_pylist() == [w["learner_id"] for w in want]
    assert table.column("enrolled_on").to_pylist() == [w["enrolled_on"] for w in want]


def test_staff_see_their_organisations_only(server: LiveServer, other: Database) -> None:
    from learner_export.auth import issue_token
    from tests.conftest import JWT_SECRET

    staff = issue_token(JWT_SECRET, STAFF)
    status, body, _ = get(server, staff, format="jsonl", columns="learner_id,organization_id")
    assert status == 200
    assigned = [
        str(r[0])
        for r in query(
            other.url,
            "SELECT client_id::text FROM public.staff_clients WHERE staff_id = $1::uuid",
            STAFF,
        )
    ]
    got = [orjson.loads(line) for line in body.splitlines()]
    assert {g["organization_id"] for g in got} == set(assigned)
    assert len(got) == len(
        expected(
            other.url,
            "AND p.client_id::text = ANY ($1::text[])".replace(
                "$1::text[]", "ARRAY['" + "','".join(assigned) + "']"
            ),
        )
    )
    foreign = query(
        other.url,
        "SELECT id::text FROM public.organizations WHERE id <> ALL ("
        "SELECT client_id FROM public.staff_clients) LIMIT 1",
    )[0][0]
    status, body, _ = get(server, staff, format="csv", client_id=foreign)
    assert status == 403
    assert orjson.loads(body)["error"]


def test_count_and_resume(server: LiveServer, other: Database) -> None:
    status, body, headers = get(
        server, format="jsonl", cursor="true", active="true", prefer="count=exact"
    )
    assert status == 200
    got = [orjson.loads(line) for line in body.splitlines()]
    want = expected(other.url, "AND p.is_active")
    assert headers["x-total-count"] == str(len(want)) == str(len(got))
    for cut in (0, 12, 13, 96, 97, len(got) - 2):
        status, rest, _ = get(
            server, format="jsonl", active="true", columns="learner_id", after=got[cut]["_cursor"]
        )
        assert status == 200
        assert [orjson.loads(line)["learner_id"] for line in rest.splitlines()] == [
            g["learner_id"] for g in got[cut + 1 :]
        ]
