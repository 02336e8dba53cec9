"""Keyset paging: no row twice, none missing, at every page boundary and through ties."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from tests.conftest import LiveServer

PAGE = 5


@pytest.fixture(scope="module", params=[True, False], ids=["bulk", "paged"])
def tiny_pages(
    start_server: Callable[..., LiveServer], request: pytest.FixtureRequest
) -> LiveServer:
    """Pages of 5 rows; after the first, the rest in the bulk pass, or page after page."""
    return start_server(page_size=PAGE, first_page_size=PAGE, bulk_pass=request.param)


@pytest.fixture
def client_with(sql: Callable[..., Any]) -> Iterator[Callable[[int, int], str]]:
    """Make a client of its own with n learners, `distinct` created_at values shared by all."""
    made: list[str] = []

    def make(n: int, distinct: int) -> str:
        client_id = str(uuid.uuid4())
        made.append(client_id)
        sql("INSERT INTO public.clients (id, name) VALUES ($1, 'keyset test')", client_id)
        sql(
            "INSERT INTO public.learners (client_id, full_name, created_at)"
            " SELECT $1, 'learner ' || i,"
            "        timestamptz '2031-01-01' + (i % $3) * interval '1 second'"
            "   FROM generate_series(1, $2) AS i",
            client_id,
            n,
            distinct,
        )
        return client_id

    yield make
    for client_id in made:
        sql("DELETE FROM public.learners WHERE client_id = $1", client_id)
        sql("DELETE FROM public.clients WHERE id = $1", client_id)


def exported_ids(server: LiveServer, **params: Any) -> list[str]:
    with server.client() as client:
        response = client.get(
            "/v1/exports/learners", params={"format": "jsonl", "columns": "learner_id", **params}
        )
    assert response.status_code == 200, response.text
    return [orjson.loads(line)["learner_id"] for line in response.content.splitlines()]


def expected_ids(sql: Callable[..., Any], client_id: str) -> list[str]:
    rows = sql(
        "SELECT id FROM public.learners WHERE client_id = $1 ORDER BY created_at, id", client_id
    )
    return [r["id"] for r in rows]


@pytest.mark.parametrize(
    ("learners", "distinct"),
    [
        (0, 1),  # empty result
        (1, 1),  # one row
        (PAGE, PAGE),  # exactly one page
        (PAGE + 1, 3),  # one page plus one row
        (2 * PAGE, 2),  # exactly two pages
        (37, 1),  # many pages, every row sharing one created_at
        (53, 4),  # many pages, ties crossing page boundaries
    ],
)
def test_every_row_once_in_key_order(
    tiny_pages: LiveServer,
    sql: Callable[..., Any],
    client_with: Callable[[int, int], str],
    learners: int,
    distinct: int,
) -> None:
    client_id = client_with(learners, distinct)
    got = exported_ids(tiny_pages, client_id=client_id)
    assert got == expected_ids(sql, client_id)
    assert len(got) == len(set(got)) == learners


@pytest.mark.parametrize("limit", [0, 1, PAGE - 1, PAGE, PAGE + 1, 2 * PAGE + 3])
def test_limit_cuts_at_any_point(
    tiny_pages: LiveServer,
    sql: Callable[..., Any],
    client_with: Callable[[int, int], str],
    limit: int,
) -> None:
    client_id = client_with(23, 2)
    got = exported_ids(tiny_pages, client_id=client_id, limit=limit)
    assert got == expected_ids(sql, client_id)[:limit]


def test_whole_export_matches_across_page_sizes(
    live: LiveServer, tiny_pages: LiveServer, sql: Callable[..., Any]
) -> None:
    everyone = [r["id"] for r in sql("SELECT id FROM public.learners ORDER BY created_at, id")]
    assert exported_ids(live) == everyone
    assert exported_ids(tiny_pages, limit=len(everyone)) == everyone
