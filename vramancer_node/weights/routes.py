"""The weights endpoints of the local API.

Endpoints
---------
``GET /v1/weights``         models this node holds (configured or fetched) with their
                            manifest digest, plus fetch progress and serving counters
                            (schema ``vramancer.weights.v1``).
``POST /v1/weights/fetch``  ``{"model": str, "files": [str]?, "wait": bool?}``: fetch
                            what is missing from members and answer when done (schema
                            ``vramancer.weights.fetch.v1``); 404 when no member has it,
                            502 when every source failed, 400 for a bad request.  With
                            ``"wait": false`` the fetch runs in the background and the
                            answer is its job (``state`` running); ``GET /v1/weights``
                            shows its progress.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vramancer_node.weights.errors import FetchFailedError, NoSourceError

if TYPE_CHECKING:
    from vramancer_node.weightswiring import WeightsWiring


def _error(status_code: int, message: str, code: str) -> JSONResponse:
    body = {"schema": "vramancer.error.v1", "error": message, "code": code}
    return JSONResponse(body, status_code=status_code)


def weights_routes(node: WeightsWiring) -> list[Route]:
    async def status(request: Request) -> Response:
        store = node.weights_store
        models: list[dict[str, Any]] = []
        for model_id in store.model_ids():
            manifest = await store.manifest(model_id)
            if manifest is None:
                continue
            models.append(
                {
                    "model": model_id,
                    "directory": str(store.directory(model_id)),
                    "configured": store.is_configured(model_id),
                    "files": len(manifest.files),
                    "bytes": manifest.total_bytes,
                    "manifest_sha256": manifest.digest().hex(),
                }
            )
        body = {"schema": "vramancer.weights.v1", "models": models, **node.weights_status()}
        return JSONResponse(body)

    async def fetch(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the request body is not JSON", "bad_request")
        model = body.get("model") if isinstance(body, dict) else None
        files = body.get("files") if isinstance(body, dict) else None
        if not isinstance(model, str):
            return _error(400, "model must be a string", "bad_request")
        if files is not None and not (
            isinstance(files, list) and all(isinstance(name, str) for name in files)
        ):
            return _error(400, "files must be a list of file names", "bad_request")
        wait = body.get("wait", True)
        if not isinstance(wait, bool):
            return _error(400, "wait must be a boolean", "bad_request")
        if not wait:
            try:
                job = node.start_fetch(model, files)
            except ValueError as exc:
                return _error(400, str(exc), "bad_request")
            return JSONResponse({"schema": "vramancer.weights.fetch.v1", **job})
        try:
            directory = await node.ensure_model_files(model, files)
        except ValueError as exc:
            return _error(400, str(exc), "bad_request")
        except NoSourceError as exc:
            return _error(404, str(exc), "no_source")
        except FetchFailedError as exc:
            return _error(502, str(exc), "fetch_failed")
        names = sorted(path.name for path in directory.iterdir() if not path.name.startswith("."))
        reply = {"model": model, "directory": str(directory), "files": names}
        return JSONResponse({"schema": "vramancer.weights.fetch.v1", **reply})

    return [
        Route("/v1/weights", status, methods=["GET"]),
        Route("/v1/weights/fetch", fetch, methods=["POST"]),
    ]
