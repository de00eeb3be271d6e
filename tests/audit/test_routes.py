"""The audit HTTP endpoints, in process: bodies, schemas and error codes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio
from starlette.applications import Starlette

from tests.audit.helpers import CLUSTER_ID, make_identity
from vramancer_node.audit import kinds
from vramancer_node.audit.routes import EXPORT_PAGE_RECORDS, audit_routes
from vramancer_node.audit.service import AuditService

RECORDS = EXPORT_PAGE_RECORDS + 5  # the export spans two pages


@pytest.fixture
async def service(state_dir: Path) -> AsyncIterator[AuditService]:
    service = AuditService(state_dir, make_identity(), CLUSTER_ID)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        async with trio.open_nursery() as appenders:
            for number in range(RECORDS):
                body = {"token_id": f"t{number}", "node_id": "n"}
                appenders.start_soon(service.append, kinds.TOKEN_USED, body)
        yield service
        nursery.cancel_scope.cancel()


def client_for(service: AuditService | None) -> httpx.AsyncClient:
    app = Starlette(routes=audit_routes(lambda: service))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://node")


async def test_tail(service: AuditService) -> None:
    async with client_for(service) as client:
        response = await client.get("/v1/audit/tail", params={"n": 3})
        assert response.status_code == 200
        body = response.json()
        assert body["schema"] == "vramancer.audit.tail.v1" and body["size"] == RECORDS
        assert [r["seq"] for r in body["records"]] == [RECORDS - 3, RECORDS - 2, RECORDS - 1]
        assert all(r["schema"] == "vramancer.audit.record.v1" for r in body["records"])
        default = (await client.get("/v1/audit/tail")).json()
        assert len(default["records"]) == 20
        for bad in ("0", "-1", "abc", "1001"):
            response = await client.get("/v1/audit/tail", params={"n": bad})
            assert response.status_code == 400
            assert response.json()["schema"] == "vramancer.error.v1"


async def test_proof_and_verify(service: AuditService) -> None:
    async with client_for(service) as client:
        proof = await client.get("/v1/audit/proof/17")
        assert proof.status_code == 200
        assert proof.json()["schema"] == "vramancer.audit.proof.v1"
        assert proof.json()["tree_size"] == RECORDS
        assert (await client.get(f"/v1/audit/proof/{RECORDS}")).status_code == 404
        assert (await client.get("/v1/audit/proof/x")).status_code == 400
        verify = await client.get("/v1/audit/verify")
        assert verify.status_code == 200
        body = verify.json()
        assert body["schema"] == "vramancer.audit.verify.v1" and body["ok"] is True
        assert body["records"] == RECORDS and body["checkpoint"]["size"] == RECORDS


async def test_export_is_json_lines(service: AuditService) -> None:
    await service.checkpoint()
    async with client_for(service) as client:
        response = await client.get("/v1/audit/export")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines[0]["schema"] == "vramancer.audit.export.v1"
    assert [line["seq"] for line in lines[1:-1]] == list(range(RECORDS))
    assert lines[-1]["schema"] == "vramancer.audit.checkpoint.v1"
    assert lines[-1]["size"] == RECORDS


async def test_without_a_running_service() -> None:
    async with client_for(None) as client:
        for path in ("/v1/audit/tail", "/v1/audit/proof/0", "/v1/audit/verify", "/v1/audit/export"):
            response = await client.get(path)
            assert response.status_code == 503
            assert response.json() == {
                "schema": "vramancer.error.v1",
                "error": "the audit log is not open",
            }
