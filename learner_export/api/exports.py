"""GET (and HEAD) /v1/exports/learners: the HTTP face of an export (learner_export.lifecycle)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from learner_export.api.errors import EXPORT_ERRORS
from learner_export.api.responses import respond
from learner_export.api.state import contract_of
from learner_export.auth import authenticate
from learner_export.formats import FORMATS
from learner_export.params import ExportParams, parse_export_params

router = APIRouter(tags=["exports"])


@router.head(
    "/v1/exports/learners",
    summary="The export's headers only (with Prefer: count=exact, its row count)",
    responses={
        200: {"description": "The headers GET would answer, without the body"},
        **EXPORT_ERRORS,
    },
    openapi_extra={"x-export-parameters": True},
)
@router.get(
    "/v1/exports/learners",
    summary="Stream every learner as " + ", ".join(f.name for f in FORMATS.values()),
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The export, streamed as it is read (chunked transfer); HEAD "
            "answers its headers only",
            "content": {f.media_type: {} for f in FORMATS.values()},
        },
        **EXPORT_ERRORS,
    },
    # Parameters come from learner_export.params.PARAMS (learner_export.api.openapi adds them).
    openapi_extra={"x-export-parameters": True},
)
async def export_learners(request: Request) -> Response:
    caller = await authenticate(request.app.state, request.headers.get("authorization"))
    query = request.query_params.multi_items()
    contract, time_zones = await contract_of(request.app)
    max_limit = request.app.state.settings.max_limit

    def params() -> ExportParams:
        return parse_export_params(query, contract, time_zones=time_zones, max_limit=max_limit)

    return await respond(request, caller, params, query, via_link=False)
