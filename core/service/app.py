"""The FastAPI application of ``podforge serve``: HTTP onto :class:`~core.service.service.Service`.

Every route but ``/health`` and the API description (``/docs``, ``/openapi.json``) needs
the bearer token (:mod:`core.service.auth`). Errors are the CLI's one-line messages as JSON,
``{"error": "...", "type": "ConsentError"}``, with a status by kind (:func:`status_of`);
an unexpected exception is logged and answered 500 with no detail, never a traceback.
Blocking work (files, encoding, models) runs in threads: synthesis through the backend's
queue, the rest with :func:`asyncio.to_thread` or FastAPI's thread pool (plain ``def``
routes). Job progress streams as server-sent events.

FastAPI is imported inside :func:`create_app`; the request models are defined there too,
which is why this module does not postpone its annotations (FastAPI reads them at run time).
"""

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, Literal

from core.errors import (
    CatalogError,
    ConsentError,
    EpisodeBusyError,
    FolderSafetyError,
    ModelError,
    PodforgeError,
    ScriptError,
    SpeakerError,
    VoiceError,
    WorkspaceError,
)
from core.progress import Cancelled
from core.service.auth import check_token
from core.service.errors import Busy
from core.service.jobs import FINISHED
from core.service.limits import BodyLimit
from core.service.service import FORMATS, Service

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)

STATUS: tuple[tuple[type[PodforgeError], int], ...] = (
    (EpisodeBusyError, 409),
    (Cancelled, 409),
    (ConsentError, 403),
    (SpeakerError, 404),
    (ScriptError, 422),
    (VoiceError, 422),
    (FolderSafetyError, 400),
    (WorkspaceError, 500),
    (CatalogError, 500),
    (ModelError, 500),
)
"""The HTTP status of each kind of ``PodforgeError`` (a ``ServiceError`` carries its own;
any other is 422: the request was understood and cannot be done)."""

INTERNAL = "internal error in the service; its log has the details"
EVENT_POLL_S = 0.2
KEEP_ALIVE_S = 15.0


def status_of(exc: PodforgeError) -> int:
    status = getattr(exc, "status", None)
    if isinstance(status, int):
        return status
    return next((code for kind, code in STATUS if isinstance(exc, kind)), 422)


def error_body(message: str, kind: str) -> dict[str, str]:
    return {"error": " ".join(message.split()), "type": kind}


def create_app(service: Service) -> "FastAPI":
    """The application serving ``service`` (closed when the application shuts down)."""
    from fastapi import APIRouter, Depends, FastAPI, Request, Security
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
    from pydantic import BaseModel, Field
    from starlette.exceptions import HTTPException

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(service.close)

    app = FastAPI(
        title="podforge",
        version=_version(),
        description=(
            "podforge's voices over HTTP: the workspace's trained voices (with their consent "
            "records) and the draft voice. Send the token from `<workspace>/.service/token` "
            "as `Authorization: Bearer <token>`. See docs/SERVICE.md."
        ),
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, max_bytes=service.limits.max_body_bytes)
    bearer = HTTPBearer(auto_error=False, description="the token in <workspace>/.service/token")

    def authorized(
        request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
    ) -> None:
        check_token(service.token, request.headers.get("authorization"))

    api = APIRouter(prefix="/v1", dependencies=[Depends(authorized)])

    # -- errors ------------------------------------------------------------------------
    @app.exception_handler(PodforgeError)
    async def podforge_error(_: Request, exc: PodforgeError) -> JSONResponse:
        status = status_of(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
        if isinstance(exc, Busy):
            headers["Retry-After"] = str(exc.retry_after)
        return JSONResponse(error_body(str(exc), type(exc).__name__), status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg', '')}"
            for e in exc.errors()
        ]
        return JSONResponse(error_body("; ".join(problems), "ValidationError"), 422)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(
            error_body(str(exc.detail), "HTTPError"), exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse(error_body(INTERNAL, "InternalError"), 500)

    # -- request bodies ----------------------------------------------------------------
    class SpeechRequest(BaseModel):
        voice: str = Field(description="a speaker of the workspace (GET /v1/voices)")
        text: str = Field(
            description=f"plain text, at most {service.limits.max_text_chars} characters; "
            "said as in a script (respelled, numbers as words)"
        )
        seed: int = Field(0, ge=0, le=2**31 - 1, description="the same seed, the same audio")
        format: Literal["wav", "mp3"] = "wav"
        backend: Literal["csm", "draft"] = Field(
            "csm", description="csm: the trained voice; draft: espeak-ng, no GPU"
        )

    class JobRequest(BaseModel):
        script: str = Field(
            max_length=500, description="a .md script inside the workspace, e.g. scripts/welcome.md"
        )
        backend: Literal["csm", "draft"] = "csm"
        seed: int = Field(0, ge=0, le=2**31 - 1)
        retakes: int | None = Field(
            None, ge=0, le=10, description="line QA candidates (default: render.retakes)"
        )

    # -- routes ------------------------------------------------------------------------
    @app.get("/health", tags=["service"])
    def health() -> dict[str, Any]:
        """Model loaded, device, memory, queue depths, jobs. No token needed."""
        return service.health()

    @api.get("/voices", tags=["voices"])
    def voices() -> list[dict[str, Any]]:
        """Every speaker, whether its trained voice may be used (and why not)."""
        return service.voices()

    @api.post(
        "/speech",
        tags=["voices"],
        response_class=Response,
        responses={200: {"content": {"audio/wav": {}, "audio/mpeg": {}}}},
    )
    async def speech(body: SpeechRequest) -> Response:
        """Synthesise ``text`` in ``voice``: a WAV or MP3 file. Requests arriving together
        are generated together (one batch)."""
        line = await asyncio.to_thread(service.line, body.voice, body.text)
        rendered = (await asyncio.wrap_future(service.synthesize(line, body.seed, body.backend)))[0]
        data = await asyncio.to_thread(service.encode, rendered, body.format)
        seconds = len(rendered.audio) / rendered.sample_rate
        return Response(
            data,
            media_type=FORMATS[body.format],
            headers={"X-Podforge-Seconds": f"{seconds:.3f}", "X-Podforge-Backend": body.backend},
        )

    @api.get("/scripts", tags=["episodes"])
    def scripts() -> list[str]:
        """The workspace's episode scripts."""
        return service.scripts()

    @api.post("/jobs", tags=["episodes"], status_code=202)
    def create_job(body: JobRequest, response: Response) -> dict[str, Any]:
        """Render a script into ``episodes/<name>/`` in the background (409 while the app,
        a ``podforge render`` or another job renders the same episode)."""
        job = service.jobs.submit(body.script, body.backend, body.seed, body.retakes)
        response.headers["Location"] = f"/v1/jobs/{job.id}"
        return job.to_json()

    @api.get("/jobs/{job_id}", tags=["episodes"])
    def job_status(job_id: str) -> dict[str, Any]:
        """A job's state and progress; its files once done."""
        return service.jobs.get(job_id).to_json()

    @api.delete("/jobs/{job_id}", tags=["episodes"], status_code=202)
    def cancel_job(job_id: str) -> dict[str, Any]:
        """Stop a job (a running render stops after its current line, writing nothing)."""
        return service.jobs.cancel(job_id).to_json()

    @api.get(
        "/jobs/{job_id}/events",
        tags=["episodes"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def job_events(job_id: str) -> StreamingResponse:
        """Server-sent events: ``progress`` on each change, then one of ``done``, ``failed``
        or ``cancelled``; ``data`` is the job's JSON, as GET /v1/jobs/{id} gives it."""
        job = service.jobs.get(job_id)

        async def events() -> AsyncIterator[str]:
            seen, quiet = -1, 0.0
            while True:
                snapshot = job.to_json()
                if snapshot["version"] != seen:
                    seen, quiet = snapshot["version"], 0.0
                    ended = snapshot["state"] in FINISHED
                    kind = snapshot["state"] if ended else "progress"
                    yield f"event: {kind}\ndata: {json.dumps(snapshot)}\n\n"
                    if ended:
                        return
                elif quiet >= KEEP_ALIVE_S:
                    yield ": keep-alive\n\n"
                    quiet = 0.0
                await asyncio.sleep(EVENT_POLL_S)
                quiet += EVENT_POLL_S

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    @api.get("/episodes", tags=["episodes"])
    def episodes() -> list[dict[str, Any]]:
        """Every episode folder and the files it has."""
        return service.episodes()

    @api.get("/episodes/{name}", tags=["episodes"])
    def episode(name: str) -> dict[str, Any]:
        """An episode's files (``complete``: its manifest is written)."""
        return service.episode(name)

    @api.get("/episodes/{name}/files/{filename}", tags=["episodes"], response_class=FileResponse)
    def episode_file(name: str, filename: str) -> FileResponse:
        """Download one of an episode's files (WAV, MP3, manifest, chapters, transcripts)."""
        return FileResponse(service.episode_file(name, filename), filename=filename)

    app.include_router(api)
    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("podforge")
    except PackageNotFoundError:
        return "0"
