"""The consensus part of the node's HTTP API.

Endpoints
---------
``GET /v1/consensus``       this node's Raft view and the replicated control state
                            (schema ``vramancer.consensus.v1``)
``GET /v1/placement``       every committed placement (``vramancer.consensus.placements.v1``)
``POST /v1/placement``      ``{"model": DIR or config.json, "context_tokens": int,
                            "dtype": str}``: plan on the leader and commit the next
                            epoch (``vramancer.consensus.placement.v1``); 400 bad request,
                            409 the model fits nowhere (the optimiser's shortfall
                            message), 503 no commit in time.
                            With ``"stages": [{node_id, device_index, first_layer,
                            last_layer_exclusive}, ...]`` (pipeline order) and optionally
                            ``"force": true``: commit those stages instead of planning
                            (method ``explicit``, admins only: 403), checked as
                            :mod:`vramancer_node.consensus.explicit` says: 400 malformed,
                            not a contiguous cover of the layers, a device twice, not a
                            member; 409 a node down or draining, no such device, a stage
                            that does not fit its device (the shortfall; ``force``
                            commits it anyway), another epoch committed first
``POST /v1/placement/plan`` the same body: what the leader would commit now, planned
                            on this node's view, nothing proposed
                            (``vramancer.consensus.placement_plan.v1``, with
                            ``changes``: False when the committed one stays)
``POST /v1/revocations``    ``{"node_id": str, "reason": str}`` (admins): commit a
                            revocation (``vramancer.revocation.v1``); 403 not an
                            admin, 404 not a member, 409 refused, 503 no commit
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vramancer_node.consensus.placing import PlacementRefused, PlacementRequestError
from vramancer_node.consensus.service import ProposalFailed, ProposalRejected

DTYPE_DEFAULT = "bf16"
CONTEXT_TOKENS_DEFAULT = 4096
REASON_CHARS_MAX = 256


def _body(schema: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"schema": schema, **body}


def _error(status_code: int, message: str) -> JSONResponse:
    return JSONResponse(_body("vramancer.error.v1", {"error": message}), status_code=status_code)


async def _json_object(request: Request) -> dict[str, Any] | JSONResponse:
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "the request body is not JSON")
    if not isinstance(body, dict):
        return _error(400, "the request body must be a JSON object")
    return body


async def _placement_request(request: Request) -> tuple[Path, int, str] | JSONResponse:
    """``(model path, context_tokens, dtype)`` from a placement body, or the 400."""
    body = await _json_object(request)
    if isinstance(body, JSONResponse):
        return body
    if "stages" in body or "force" in body:
        return _error(400, "a plan takes no stages: POST them to /v1/placement")
    return _placement_fields(body)


def _placement_fields(body: dict[str, Any]) -> tuple[Path, int, str] | JSONResponse:
    model = body.get("model")
    context = body.get("context_tokens", CONTEXT_TOKENS_DEFAULT)
    dtype = body.get("dtype", DTYPE_DEFAULT)
    if not isinstance(model, str) or not model:
        return _error(400, "model must be the path of a checkpoint directory or config.json")
    if isinstance(context, bool) or not isinstance(context, int):
        return _error(400, "context_tokens must be an integer")
    if not isinstance(dtype, str):
        return _error(400, "dtype must be a string such as bf16")
    return Path(model), context, dtype


def consensus_routes(node: Any) -> list[Route]:
    """Routes serving ``node`` (a ``Node`` with the consensus mixin)."""

    async def consensus(request: Request) -> Response:
        status = node.consensus_status()
        if status is None:
            return _error(503, "consensus has not started yet")
        return JSONResponse(_body("vramancer.consensus.v1", status))

    async def placements(request: Request) -> Response:
        return JSONResponse(
            _body("vramancer.consensus.placements.v1", {"placements": node.placements_view()})
        )

    async def plan_placement(request: Request) -> Response:
        parsed = await _placement_request(request)
        if isinstance(parsed, JSONResponse):
            return parsed
        try:
            view = node.plan_placement_view(*parsed)
        except (PlacementRequestError, ValueError) as exc:
            return _error(400, str(exc))
        except PlacementRefused as exc:
            return _error(409, str(exc))
        except ProposalFailed as exc:
            return _error(503, str(exc))
        return JSONResponse(_body("vramancer.consensus.placement_plan.v1", view))

    async def propose_placement(request: Request) -> Response:
        body = await _json_object(request)
        if isinstance(body, JSONResponse):
            return body
        parsed = _placement_fields(body)
        if isinstance(parsed, JSONResponse):
            return parsed
        force = body.get("force", False)
        if not isinstance(force, bool):
            return _error(400, "force must be true or false")
        if force and "stages" not in body:
            return _error(400, "force applies to explicit stages only")
        try:
            if "stages" in body:
                view = await node.propose_explicit_placement_view(*parsed, body["stages"], force)
            else:
                view = await node.propose_placement_view(*parsed)
        except PermissionError as exc:
            return _error(403, str(exc))
        except (PlacementRequestError, ValueError) as exc:
            return _error(400, str(exc))
        except PlacementRefused as exc:
            return _error(409, str(exc))
        except ProposalRejected as exc:
            return _error(409, f"the placement was refused: {exc.reason}")
        except ProposalFailed as exc:
            return _error(503, str(exc))
        return JSONResponse(_body("vramancer.consensus.placement.v1", view))

    async def revoke(request: Request) -> Response:
        body = await _json_object(request)
        if isinstance(body, JSONResponse):
            return body
        node_id, reason = body.get("node_id"), body.get("reason", "")
        if not isinstance(node_id, str) or not node_id:
            return _error(400, "node_id must be a node id")
        if not isinstance(reason, str) or len(reason) > REASON_CHARS_MAX:
            return _error(400, f"reason must be a string of at most {REASON_CHARS_MAX} chars")
        try:
            result = await node.revoke(node_id, reason)
        except PermissionError as exc:
            return _error(403, str(exc))
        except LookupError as exc:
            return _error(404, str(exc))
        except ProposalRejected as exc:
            return _error(409, f"the revocation was refused: {exc.reason}")
        except ProposalFailed as exc:
            return _error(503, str(exc))
        return JSONResponse(_body("vramancer.revocation.v1", result))

    return [
        Route("/v1/consensus", consensus),
        Route("/v1/placement", placements, methods=["GET"]),
        Route("/v1/placement", propose_placement, methods=["POST"]),
        Route("/v1/placement/plan", plan_placement, methods=["POST"]),
        Route("/v1/revocations", revoke, methods=["POST"]),
    ]
