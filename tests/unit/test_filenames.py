"""Download file names that say what is inside, safe in every browser's Save dialog."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import unquote

from learner_export.filenames import content_disposition, export_filename
from tests.conftest import LiveServer

NOW = datetime(2026, 12, 1, 23, 27, 50, tzinfo=UTC)
CLIENT = "3f2a9c1e-5b7d-4e1f-9a2b-6c8d0e4f1a3b"


def names(extension: str = "csv", **filters: object) -> tuple[str, str]:
    values: dict[str, object] = {
        "client_ids": None,
        "created_from": None,
        "created_to": None,
        "active": None,
        "now": NOW,
        **filters,
    }
    return export_filename(extension, **values)  # type: ignore[arg-type]


def test_no_filter_says_all() -> None:
    assert names("xlsx") == ("learners-all-20261201T232750Z.xlsx",) * 2


def test_filters_are_named_in_order() -> None:
    ascii_name, full = names(
        client_ids=["a", "b"],
        active=True,
        created_from=datetime(2024, 1, 1, tzinfo=UTC),
        created_to=datetime(2025, 1, 1, tzinfo=UTC),
    )
    assert (
        ascii_name
        == full
        == "learners-2-clients-active-2024-01-01_to_2025-01-01-20261201T232750Z.csv"
    )


def test_one_client_by_its_id() -> None:
    assert names(client_ids=[CLIENT]) == ("learners-client-3f2a9c1e-20261201T232750Z.csv",) * 2


def test_half_open_ranges_and_times() -> None:
    assert (
        names(created_from=datetime(2024, 3, 1, tzinfo=UTC), active=False)[0]
        == "learners-inactive-from_2024-03-01-20261201T232750Z.csv"
    )
    sydney = timezone(timedelta(hours=11))
    assert (
        names(created_to=datetime(2024, 3, 1, 9, 30, tzinfo=sydney))[0]
        == "learners-before_2024-02-29T2230Z-20261201T232750Z.csv"
    )
    assert (
        names(now=datetime(2026, 12, 2, 10, 27, 50, tzinfo=sydney))[0]
        == "learners-all-20261201T232750Z.csv"
    )


def test_content_disposition_carries_both_names() -> None:
    header = content_disposition(
        "learners-client-Zurich-20261201T232750Z.csv", "learners-client-Zürich-20261201T232750Z.csv"
    )
    assert header.startswith('attachment; filename="learners-client-Zurich-20261201T232750Z.csv";')
    encoded = header.split("filename*=UTF-8''")[1]
    assert encoded.isascii() and "%C3%BC" in encoded
    assert unquote(encoded) == "learners-client-Zürich-20261201T232750Z.csv"


def test_the_download_is_named_after_its_filters(live: LiveServer) -> None:
    with live.client() as client:
        response = client.get(
            "/v1/exports/learners",
            params={
                "format": "jsonl",
                "active": "true",
                "created_from": "2020-01-01",
                "created_to": "2030-01-01",
                "limit": "1",
            },
        )
    assert response.status_code == 200
    disposition = response.headers["content-disposition"]
    assert disposition.startswith(
        'attachment; filename="learners-active-2020-01-01_to_2030-01-01-20'
    )
    stamp = disposition.split('"')[1].rsplit("-", 1)[1]
    made = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ.jsonl").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - made) < timedelta(minutes=2)
