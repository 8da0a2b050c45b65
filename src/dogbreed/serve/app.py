"""The Flask app: SageMaker's /ping, /invocations and /execution-parameters, errors as JSON.

Each gunicorn worker builds one app; the model loads and warms up on a background thread so that
/ping can answer 503 (not hang) until the worker is ready.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import os
import re
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from flask import Flask, Request, Response, request
from PIL import Image
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from dogbreed.artifact import load_spec
from dogbreed.serve.admission import Overloaded
from dogbreed.serve.batcher import BatcherStopped
from dogbreed.serve.config import ConfigError, ServerSettings
from dogbreed.serve.predictor import (
    ImageData,
    InputError,
    ModelOutputError,
    Predictor,
    byte_count,
)
from dogbreed.serve.readiness import ReadyWorkers
from dogbreed.serve.request_body import (
    IMAGE_TYPES,
    JSON,
    JsonBodyTooLarge,
    SpoolError,
    read_into_memory,
    spool,
    spools,
)
from dogbreed.serve.runtime import load_runtime
from dogbreed.serve.tuning import (
    DEFAULT_TOP_K,
    MAX_BATCH_WAIT_S,
    MAX_IMAGE_PIXELS,
    MAX_IMAGES_PER_REQUEST,
    MAX_JSON_BODY_BYTES,
    MAX_REQUEST_PIXELS,
)

log = logging.getLogger(__name__)

CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
#: Where a worker's app keeps its :class:`ModelState` (``app.extensions``), for gunicorn's hooks.
MODEL_STATE = "dogbreed"
#: Exit status gunicorn's arbiter reads as "worker failed to boot": it stops instead of respawning.
WORKER_BOOT_ERROR = 3
_TOP_K_ATTRIBUTE = re.compile(r"(?:^|[,;&\s])top_k\s*=\s*([^,;&\s]*)")
_ASCII_DIGITS = re.compile(r"[0-9]+")
#: ASCII whitespace, which base64 tools insert every 76 characters (``base64`` without ``-w0``).
_BASE64_WHITESPACE = str.maketrans("", "", " \t\r\n\f\v")


class ApiError(Exception):
    """A request the server refuses, with its HTTP status and a message naming the problem."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ModelLoading(Exception):
    """An invocation that came before this worker's model was loaded and warmed up."""


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``body`` as strict JSON: a NaN or infinity raises (ValueError) instead of going out bare."""
    return Response(
        json.dumps(body, allow_nan=False), status=status, mimetype=JSON, headers=headers
    )


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    from werkzeug.http import HTTP_STATUS_CODES

    body = {"status": status, "error": HTTP_STATUS_CODES.get(status, "Error"), "message": message}
    return json_response(body, status, headers)


def parse_top_k(header: str | None, query: list[str], default: int, num_classes: int) -> int:
    """``top_k`` from the custom-attributes header (``top_k=3``) or ``?top_k=3``, capped at classes."""
    found: list[tuple[str, str]] = []
    if header:
        found += [(f"{CUSTOM_ATTRIBUTES} top_k", m) for m in _TOP_K_ATTRIBUTE.findall(header)]
    found += [("query parameter top_k", value) for value in query]
    if not found:
        return min(default, num_classes)
    values = set()
    for source, raw in found:
        digits = raw.strip(" \t")
        # ASCII digits only: int() would also take "1_0", "+3" and Arabic-Indic digits.
        if not _ASCII_DIGITS.fullmatch(digits):
            raise ApiError(
                400, f"{source} must be a positive integer (>= 1, ASCII digits), got {raw[:40]!r}"
            )
        try:
            value = int(digits)
        except ValueError:  # more digits than int() converts (4,300)
            raise ApiError(400, f"{source} must be a positive integer, got {raw[:40]!r}") from None
        if value < 1:
            raise ApiError(400, f"{source} must be >= 1, got {value}")
        values.add(value)
    if len(values) > 1:
        raise ApiError(400, f"conflicting top_k values {sorted(values)}: give one")
    return min(values.pop(), num_classes)


def decode_base64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise ApiError(400, f"{what} must be a base64 string, got {type(text).__name__}")
    if text.startswith("data:") and "," in text:  # a data URL: data:image/jpeg;base64,....
        text = text.split(",", 1)[1]
    try:
        data = base64.b64decode(text.translate(_BASE64_WHITESPACE), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, f"{what} is not valid base64: {exc}") from None
    if not data:
        raise ApiError(400, f"{what} is empty")
    return data


def images_from_json(body: bytes, max_images: int) -> tuple[list[bytes], list[str]]:
    """``{"images": ["<base64>", ...]}`` -> image bytes and their names for error messages."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(document, dict) or "images" not in document:
        raise ApiError(400, 'JSON body must be an object {"images": ["<base64 image>", ...]}')
    images = document["images"]
    if not isinstance(images, list) or not images:
        raise ApiError(400, '"images" must be a non-empty list of base64 strings')
    if len(images) > max_images:
        raise ApiError(
            413,
            f"{len(images)} images in one request, more than the limit of {max_images}: "
            "split them over several requests",
        )
    names = [f"images[{i}]" for i in range(len(images))]
    return [decode_base64(text, name) for text, name in zip(images, names, strict=True)], names


@dataclass(frozen=True)
class Invocation:
    """An /invocations request, validated: its images (bytes, or a spooled raw body's file), their
    names for error messages, top_k. A context manager: leaving it closes a spooled body."""

    images: list[ImageData]
    names: list[str]
    top_k: int

    def __enter__(self) -> Invocation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for image in self.images:
            if not isinstance(image, bytes):
                image.close()


def check_media_types(request: Request) -> None:
    """Refuse an ``Accept`` that excludes JSON (406) and a ``Content-Type`` not served (415)."""
    if request.accept_mimetypes and not request.accept_mimetypes.best_match([JSON]):
        raise ApiError(
            406,
            f"cannot answer with Accept: {request.headers.get('Accept')}; responses are {JSON}",
        )
    if request.mimetype not in (*IMAGE_TYPES, JSON):
        raise ApiError(
            415,
            f"unsupported Content-Type {request.content_type or '(none)'!r}; "
            f"send one of {', '.join((*IMAGE_TYPES, JSON))}",
        )


def parse_invocation(request: Request, max_payload_bytes: int, num_classes: int) -> Invocation:
    """Validate an /invocations request and take its images out of the body, or raise why not.

    A large raw image body is spooled to a temporary file as it arrives (:mod:`.request_body`);
    a JSON body is read into memory, up to ``MAX_JSON_BODY_BYTES``.
    """
    check_media_types(request)
    top_k = parse_top_k(
        request.headers.get(CUSTOM_ATTRIBUTES),
        request.args.getlist("top_k"),
        DEFAULT_TOP_K,
        num_classes,
    )
    if request.mimetype == JSON:
        limit = min(max_payload_bytes, MAX_JSON_BODY_BYTES)
        too_large = JsonBodyTooLarge if limit < max_payload_bytes else RequestEntityTooLarge
        if (request.content_length or 0) > limit:
            raise too_large()
        body = read_into_memory(request.stream, limit)
        if len(body) > limit:
            raise too_large()
        if not body:
            raise ApiError(400, "the request body is empty: send an image or a JSON document")
        return Invocation(*images_from_json(body, MAX_IMAGES_PER_REQUEST), top_k)
    if spools(request.content_type, request.content_length):
        image: ImageData = spool(request.stream, max_payload_bytes)
    else:
        image = read_into_memory(request.stream, max_payload_bytes)
        if len(image) > max_payload_bytes:
            raise RequestEntityTooLarge()
    if not byte_count(image):
        raise ApiError(400, "the request body is empty: send an image or a JSON document")
    return Invocation([image], ["image"], top_k)


@dataclass(frozen=True)
class ErrorRule:
    """How the app answers an exception type, in JSON (:func:`error_response`)."""

    status: int | None = None  # None: the exception's own (own_status)
    message: str | None = None  # a template of exc and settings; None: the exception's own
    retry_after: str | None = None  # the Retry-After header, a template too; None: no header
    log: bool = False  # log the traceback: an error of the server's, not the request's

    def answer(self, exc: Exception, settings: ServerSettings) -> Response:
        """The JSON error response for ``exc``."""
        if self.log:
            log.exception("unexpected error in %s %s", request.method, request.path)
        fields = {"exc": exc, "settings": settings}
        message = own_message(exc) if self.message is None else self.message.format(**fields)
        retry = self.retry_after
        headers = None if retry is None else {"Retry-After": retry.format(**fields)}
        return error_response(self.status or own_status(exc), message, headers)


def own_status(exc: Exception) -> int:
    """The status an exception carries: an HTTPException's code, else its ``status`` (or 500)."""
    if isinstance(exc, HTTPException):
        return exc.code or 500
    return getattr(exc, "status", 500)


def own_message(exc: Exception) -> str:
    """The message an exception carries: an HTTPException's description (or name), else its text."""
    if isinstance(exc, HTTPException):
        return exc.description or exc.name
    return str(exc)


#: Every error the app answers, as JSON; Flask takes the rule of the most specific type.
ERROR_RULES: dict[type[Exception], ErrorRule] = {
    ApiError: ErrorRule(),
    InputError: ErrorRule(),
    ModelOutputError: ErrorRule(log=True),
    HTTPException: ErrorRule(),
    RequestEntityTooLarge: ErrorRule(
        413,
        "the request body exceeds the {settings.max_payload_bytes:,}-byte limit "
        "(SAGEMAKER_MAX_PAYLOAD_IN_MB)",
    ),
    JsonBodyTooLarge: ErrorRule(),
    SpoolError: ErrorRule(retry_after="1", log=True),
    ModelLoading: ErrorRule(503, "the model is still loading", retry_after="1"),
    Overloaded: ErrorRule(503, retry_after="{exc.retry_after_s}"),
    FutureTimeout: ErrorRule(503, "inference did not finish within {settings.timeout_s}s", "1"),
    BatcherStopped: ErrorRule(503, "the server is shutting down"),
    Exception: ErrorRule(500, "internal error: {exc.__class__.__name__}", log=True),
}


class ModelState:
    """The worker's predictor, set once it is loaded and warmed up."""

    def __init__(self) -> None:
        self.predictor: Predictor | None = None
        self.loaded_in_s: float | None = None

    def ready_predictor(self) -> Predictor:
        """The predictor, or :class:`ModelLoading` while it loads."""
        if self.predictor is None:
            raise ModelLoading()
        return self.predictor

    def stop(self) -> None:
        """End the inference thread after what is queued (a no-op while still loading)."""
        if self.predictor is not None:
            self.predictor.stop()
            log.info(
                "worker %d: inference thread stopped after %d batches",
                os.getpid(),
                self.predictor.batches_run,
            )

    def load(self, settings: ServerSettings, device: str) -> None:
        """Load the model the master chose on ``device``, warm it up, then serve with it."""
        start = time.perf_counter()
        predictor = build_predictor(settings, device)
        predictor.warm_up(predictor.runtime.warm_batches)
        self.loaded_in_s = time.perf_counter() - start
        self.predictor = predictor
        log.info(
            "worker %d ready: %s; %d classes, image size %d, batches of up to %d, loaded in %.1fs",
            os.getpid(),
            predictor.runtime.description,
            predictor.num_classes,
            predictor.spec.image_size,
            predictor.max_batch_size,
            self.loaded_in_s,
        )


def build_predictor(settings: ServerSettings, device: str) -> Predictor:
    """The predictor for the model and batch size the master chose (ServerSettings.for_model)."""
    if settings.model_choice is None:
        raise ConfigError("no model chosen: the master chooses it (ServerSettings.for_model)")
    spec = load_spec(settings.model_dir)
    return Predictor(
        load_runtime(settings.model_choice, spec, device, settings.torch_threads),
        spec,
        max_batch_size=settings.batch_size,
        max_batch_wait_s=MAX_BATCH_WAIT_S,
        max_image_pixels=MAX_IMAGE_PIXELS,
        max_request_pixels=MAX_REQUEST_PIXELS,
        preprocess_on_requests=settings.preprocess_on_requests,
        decode_slots=settings.decode_threads,
        timeout_s=settings.timeout_s,
        max_queue_wait_s=settings.max_queue_wait_s,
        max_waiting_requests=settings.max_waiting_requests,
    )


def worker_device(settings: ServerSettings) -> str:
    """This worker's device: ``cuda:<DOGBREED_CUDA_INDEX>`` (set at fork) on GPU, else ``cpu``."""
    if settings.device == "cuda":
        return f"cuda:{os.environ.get('DOGBREED_CUDA_INDEX', '0')}"
    return "cpu"


def configure_worker() -> None:
    """Per-process settings: PIL's own bomb limit, logging (the runtime sets its threads)."""
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we refuse those ourselves
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO,
            format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s",
        )


def start_loading(
    state: ModelState,
    settings: ServerSettings,
    ready_workers: ReadyWorkers | None,
    on_failure: Callable[[], None],
) -> None:
    """Load and warm up on a thread; then count this worker as ready. Failure ends the worker."""

    def run() -> None:
        try:
            state.load(settings, worker_device(settings))
            if ready_workers is not None:
                ready_workers.mark_ready(os.getpid())
        except Exception:
            log.exception("cannot load the model from %s", settings.model_dir)
            on_failure()

    threading.Thread(target=run, name="dogbreed-model-loader", daemon=True).start()


def ping_response(state: ModelState, ready_workers: ReadyWorkers | None) -> Response:
    """/ping: 200 once this worker (with ``ready_workers``: every worker) is ready, else 503."""
    if state.predictor is None:
        return json_response({"status": "loading"}, 503, {"Retry-After": "1"})
    if ready_workers is not None and not ready_workers.all_ready():
        body = {
            "status": "loading",
            "workers_ready": ready_workers.count(),
            "workers": ready_workers.workers,
        }
        return json_response(body, 503, {"Retry-After": "1"})
    return json_response({"status": "ready"})


def batch_transform_parameters(settings: ServerSettings) -> dict[str, int | str]:
    """/execution-parameters: batch transform's settings, from the server's real limits."""
    return {
        "MaxConcurrentTransforms": settings.max_concurrent_transforms,
        "BatchStrategy": "SINGLE_RECORD",
        "MaxPayloadInMB": settings.batch_payload_mb,
    }


def echo_custom_attributes(response: Response) -> Response:
    """Return the request's custom-attributes header on the response, as SageMaker expects."""
    attributes = request.headers.get(CUSTOM_ATTRIBUTES)
    if attributes is not None:
        response.headers[CUSTOM_ATTRIBUTES] = attributes
    return response


def _exit_boot_error() -> None:
    os._exit(WORKER_BOOT_ERROR)


def create_app(
    settings: ServerSettings,
    ready_workers: ReadyWorkers | None = None,
    on_load_failure: Callable[[], None] = _exit_boot_error,
) -> Flask:
    """The WSGI app for one worker; starts loading the model in the background.

    ``ready_workers`` (shared by all workers) makes /ping wait for every worker, not just this one.
    """
    configure_worker()
    app = Flask("dogbreed.serve")
    # One byte over the limit: a chunked body (no Content-Length) is cut there, not rejected, so
    # reading limit + 1 bytes is how an oversized one shows.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_payload_bytes + 1
    state = ModelState()
    app.extensions[MODEL_STATE] = state
    start_loading(state, settings, ready_workers, on_load_failure)

    @app.get("/ping")
    def ping() -> Response:
        return ping_response(state, ready_workers)

    @app.get("/execution-parameters")
    def execution_parameters() -> Response:
        return json_response(batch_transform_parameters(settings))

    @app.post("/invocations")
    def invocations() -> Response:
        predictor = state.ready_predictor()
        with (
            predictor.announce_request(),
            parse_invocation(request, settings.max_payload_bytes, predictor.num_classes) as call,
        ):
            predictions = predictor.predict(call.images, call.top_k, call.names)
        return json_response({"predictions": [[p.as_dict() for p in row] for row in predictions]})

    app.after_request(echo_custom_attributes)
    for exc_type, rule in ERROR_RULES.items():
        app.register_error_handler(exc_type, functools.partial(rule.answer, settings=settings))
    return app
