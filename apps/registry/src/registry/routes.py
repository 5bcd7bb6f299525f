"""The registry's API: thin routes over the catalog."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse

from genai_platform.contracts.registry import (
    AliasMove,
    Artifact,
    FileComplete,
    Model,
    NewModel,
    NewVersion,
    UploadedPart,
    Version,
)
from genai_platform.errors import Problem, problem_responses
from genai_platform.service import SidecarDep
from registry.artifacts import CorruptArtifact
from registry.catalog import Catalog
from registry.errors import VersionNotFound
from registry.lifecycle import make_ready, point_alias, remove_alias

router = APIRouter(prefix="/v1/models", tags=["registry"])


async def get_catalog(request: Request) -> Catalog:
    return request.app.state.catalog


CatalogDep = Annotated[Catalog, Depends(get_catalog)]


@router.post("", status_code=201, summary="Register a model")
async def create_model(new: NewModel, catalog: CatalogDep) -> Model:
    return await catalog.create_model(new)


@router.get("", summary="Every registered model")
async def list_models(catalog: CatalogDep) -> list[Model]:
    return await catalog.list_models()


@router.get("/{name}", summary="One model, with its aliases", responses=problem_responses(404))
async def get_model(name: str, catalog: CatalogDep) -> Model:
    model, _ = await catalog.get_model(name)
    return model


@router.post("/{name}/versions", status_code=201, summary="Add a version (numbered automatically)")
async def create_version(name: str, new: NewVersion, catalog: CatalogDep) -> Version:
    return await catalog.create_version(name, new)


@router.get("/{name}/versions", summary="Every version of a model", responses=problem_responses(404))
async def list_versions(name: str, catalog: CatalogDep) -> list[Version]:
    return await catalog.list_versions(name)


@router.get(
    "/{name}/versions/{reference}", summary="A version by number, alias or `latest`", responses=problem_responses(404)
)
async def get_version(name: str, reference: str, catalog: CatalogDep) -> Version:
    return await catalog.resolve(name, reference)


@router.put("/{name}/versions/{number}/files/{filename}/parts/{index}", summary="Upload one part of a file")
async def upload_part(
    name: str, number: int, filename: str, index: int, request: Request, catalog: CatalogDep
) -> UploadedPart:
    return await catalog.upload_part(name, number, filename, index, await request.body())


@router.post("/{name}/versions/{number}/files/{filename}/complete", summary="Check and record an uploaded file")
async def complete_file(name: str, number: int, filename: str, done: FileComplete, catalog: CatalogDep) -> Artifact:
    return await catalog.complete_file(name, number, filename, done.parts, done.sha256)


@router.post("/{name}/versions/{number}/ready", summary="Freeze a version's files; publishes model.registered")
async def mark_ready(name: str, number: int, catalog: CatalogDep, sidecar: SidecarDep) -> Version:
    return await make_ready(catalog, sidecar, name, number)


@router.get("/{name}/versions/{number}/files/{filename}", summary="Download a file, checked against its sha256")
async def download_file(name: str, number: int, filename: str, catalog: CatalogDep) -> StreamingResponse:
    version = await catalog.get_version(name, number)
    artifact = version.artifacts.get(filename)
    if artifact is None:
        raise VersionNotFound(f"Version {number} of '{name}' has no file '{filename}'.")
    parts = catalog.artifacts.read(name, number, artifact)
    # Read the first part before answering: a missing or corrupt start is a clean error, not a cut stream.
    try:
        first = await anext(parts)
    except CorruptArtifact as error:
        raise Problem(500, "The stored file no longer matches its sha256.") from error

    async def body():
        yield first
        async for chunk in parts:
            yield chunk

    headers = {"X-Content-SHA256": artifact.sha256, "Content-Length": str(artifact.size)}
    return StreamingResponse(body(), media_type="application/octet-stream", headers=headers)


@router.put(
    "/{name}/aliases/{alias}",
    summary="Point an alias at a ready version; publishes model.promoted",
    responses=problem_responses(404),
)
async def move_alias(name: str, alias: str, move: AliasMove, catalog: CatalogDep, sidecar: SidecarDep) -> Model:
    return await point_alias(catalog, sidecar, name, alias, move.version)


@router.delete(
    "/{name}/aliases/{alias}",
    status_code=204,
    summary="Delete an alias; publishes model.promoted with `version` null",
    response_class=Response,
    responses=problem_responses(404),
)
async def delete_alias(name: str, alias: str, catalog: CatalogDep, sidecar: SidecarDep) -> Response:
    await remove_alias(catalog, sidecar, name, alias)
    return Response(status_code=204)
