"""Property-based fuzzing from the service's own OpenAPI document (schemathesis): every operation,
with valid and invalid inputs, with an admin token and with none, and never a 5xx."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode

from tests.conftest import LiveServer

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))


def fuzz(server: LiveServer, headers: dict[str, str]) -> tuple[int, list[str]]:
    """Run every operation's generated cases; the number of cases and the server errors."""
    schema = schemathesis.openapi.from_dict(server.app.openapi())
    cases = 0
    errors: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=False,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                nonlocal cases
                cases += 1
                response = case.call(base_url=server.url, headers=headers, timeout=60)
                try:
                    case.validate_response(response, checks=[not_a_server_error])
                except (AssertionError, FailureGroup) as exc:
                    errors.append(
                        f"{case.method} {case.formatted_path} {case.query!r} "
                        f"{case.body!r}: {response.status_code} {exc}"[:600]
                    )

            try:
                run()
            except Unsatisfiable:
                # An operation without parameters or body has no invalid input to make.
                assert mode is GenerationMode.NEGATIVE
    return cases, errors


@pytest.mark.parametrize("authorized", [True, False], ids=["admin", "no-token"])
def test_no_input_gets_a_server_error(
    start_server: Callable[..., LiveServer], authorized: bool
) -> None:
    # Refusals are not slowed here: a fuzzer is refused on purpose, thousands of times.
    server = start_server(refusals_per_minute=1_000_000)
    headers = {"Authorization": f"Bearer {server.token}"} if authorized else {}
    cases, errors = fuzz(server, headers)
    print(
        f"fuzz ({'admin' if authorized else 'no token'}): {cases} generated cases, "
        f"{len(errors)} server errors"
    )
    assert cases > 0
    assert not errors, "\n".join(errors[:20])
