"""Signed links without a server: every problem of a link's query is named, and only the
canonical encoding of a signature verifies."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from learner_export.api.links import check_link_query
from learner_export.errors import Forbidden, InvalidParameter
from tests.db.test_links import SIGNER, _with_unused_bits_set


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t + "!!",
        lambda t: t + "=",
        lambda t: t + "==",
        lambda t: t + " ",
        lambda t: t[:-4] + "+" + t[-3:],
        _with_unused_bits_set,
    ],
    ids=["bangs", "padding", "double-padding", "space", "standard-alphabet", "unused-bits"],
)
def test_only_the_canonical_encoding_of_a_signature_verifies(mangle: Callable[[str], str]) -> None:
    token = SIGNER.sign(str(uuid.uuid4()), [("limit", "1")], int(time.time()) + 60)
    assert SIGNER.verify(token).query == (("limit", "1"),)
    with pytest.raises(Forbidden):
        SIGNER.verify(mangle(token))


def test_check_link_query_names_every_problem() -> None:
    check_link_query([("link", "a")])
    with pytest.raises(InvalidParameter) as refused:
        check_link_query([("link", "a"), ("x", "1"), ("link", "b")])
    assert refused.value.detail == [
        {"parameter": "link", "message": "given more than once"},
        {"parameter": "x", "message": "unknown parameter"},
    ]
