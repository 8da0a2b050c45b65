"""The Flask app: SageMaker's /ping, /invocations and /execution-parameters, errors as JSON.

Each gunicorn worker builds one app; the model loads and warms up on a background thread so that
/ping can answer 503 (not hang) until the worker is ready.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from flask import Flask, Response, request
from PIL import Image
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from dogbreed.artifact import load_spec
from dogbreed.serve.admission import Overloaded
from dogbreed.serve.batcher import BatcherStopped
from dogbreed.serve.config import ServerSettings
from dogbreed.serve.predictor import InputError, Prediction, Predictor
from dogbreed.serve.readiness import ReadyWorkers
from dogbreed.serve.runtime import choose_model, load_runtime
from dogbreed.serve.tuning import (
    DEFAULT_TOP_K,
    MAX_BATCH_WAIT_S,
    MAX_IMAGE_PIXELS,
    MAX_IMAGES_PER_REQUEST,
)

log = logging.getLogger(__name__)

JSON = "application/json"
IMAGE_TYPES = ("image/jpeg", "image/png", "application/x-image")
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
#: Where a worker's app keeps its :class:`ModelState` (``app.extensions``), for gunicorn's hooks.
MODEL_STATE = "dogbreed"
#: Exit status gunicorn's arbiter reads as "worker failed to boot": it stops instead of respawning.
WORKER_BOOT_ERROR = 3
_TOP_K_ATTRIBUTE = re.compile(r"(?:^|[,;&\s])top_k\s*=\s*([^,;&\s]*)")


class ApiError(Exception):
    """A request the server refuses, with its HTTP status and a message naming the problem."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, mimetype=JSON, headers=headers)


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
        try:
            value = int(raw.strip())
        except ValueError:
            raise ApiError(400, f"{source} must be a positive integer, got {raw!r}") from None
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
        data = base64.b64decode(text, validate=True)
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


class ModelState:
    """The worker's predictor, set once it is loaded and warmed up."""

    def __init__(self) -> None:
        self.predictor: Predictor | None = None
        self.loaded_in_s: float | None = None

    def stop(self) -> None:
        """End the inference thread after what is queued (a no-op while still loading)."""
        if self.predictor is not None:
            self.predictor.batcher.stop()
            log.info(
                "worker %d: inference thread stopped after %d batches",
                os.getpid(),
                self.predictor.batcher.batches_run,
            )

    def load(self, settings: ServerSettings, device: str) -> None:
        start = time.perf_counter()
        spec = load_spec(settings.model_dir)
        choice = settings.model_choice or choose_model(
            settings.model_dir, settings.runtime, settings.precision, settings.device
        )
        runtime = load_runtime(choice, spec, device, settings.torch_threads)
        predictor = Predictor(
            runtime,
            spec,
            max_batch_size=settings.max_batch_size,
            max_batch_wait_s=MAX_BATCH_WAIT_S,
            max_image_pixels=MAX_IMAGE_PIXELS,
            preprocess_on_requests=settings.preprocess_on_requests,
            decode_slots=settings.decode_threads,
            timeout_s=settings.timeout_s,
            max_queue_wait_s=settings.max_queue_wait_s,
            max_waiting_requests=settings.max_waiting_requests,
        )
        predictor.warm_up(runtime.warm_batches)
        self.loaded_in_s = time.perf_counter() - start
        self.predictor = predictor
        log.info(
            "worker %d ready: %s; %d classes, image size %d, batches of up to %d, loaded in %.1fs",
            os.getpid(),
            runtime.description,
            predictor.num_classes,
            spec.image_size,
            predictor.batcher.max_batch_size,
            self.loaded_in_s,
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

    def ready_predictor() -> Predictor:
        if state.predictor is None:
            raise ApiError(503, "the model is still loading", {"Retry-After": "1"})
        return state.predictor

    @app.get("/ping")
    def ping() -> Response:
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

    @app.get("/execution-parameters")
    def execution_parameters() -> Response:
        return json_response(
            {
                "MaxConcurrentTransforms": settings.max_concurrent_transforms,
                "BatchStrategy": "SINGLE_RECORD",
                "MaxPayloadInMB": settings.batch_payload_mb,
            }
        )

    @app.post("/invocations")
    def invocations() -> Response:
        predictor = ready_predictor()
        with predictor.batcher.announce():  # a partial batch may wait for this request
            predictions = predict_request(predictor)
        return json_response({"predictions": [[p.as_dict() for p in row] for row in predictions]})

    def predict_request(predictor: Predictor) -> list[list[Prediction]]:
        """Validate the request, decode its images, return their top-k."""
        if request.accept_mimetypes and not request.accept_mimetypes.best_match([JSON]):
            raise ApiError(
                406,
                f"cannot answer with Accept: {request.headers.get('Accept')}; responses are {JSON}",
            )
        content_type = request.mimetype
        if content_type not in (*IMAGE_TYPES, JSON):
            raise ApiError(
                415,
                f"unsupported Content-Type {request.content_type or '(none)'!r}; "
                f"send one of {', '.join((*IMAGE_TYPES, JSON))}",
            )
        top_k = parse_top_k(
            request.headers.get(CUSTOM_ATTRIBUTES),
            request.args.getlist("top_k"),
            DEFAULT_TOP_K,
            predictor.num_classes,
        )
        body = request.get_data(cache=False)
        if len(body) > settings.max_payload_bytes:
            raise RequestEntityTooLarge()
        if not body:
            raise ApiError(400, "the request body is empty: send an image or a JSON document")
        if content_type == JSON:
            images, names = images_from_json(body, MAX_IMAGES_PER_REQUEST)
        else:
            images, names = [body], ["image"]
        return predictor.predict(images, top_k, names)

    @app.after_request
    def echo_custom_attributes(response: Response) -> Response:
        attributes = request.headers.get(CUSTOM_ATTRIBUTES)
        if attributes is not None:
            response.headers[CUSTOM_ATTRIBUTES] = attributes
        return response

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.message, exc.headers)

    @app.errorhandler(InputError)
    def input_error(exc: InputError) -> Response:
        return error_response(exc.status, str(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        if status == 413:
            message = (
                f"the request body exceeds the {settings.max_payload_bytes:,}-byte limit "
                "(SAGEMAKER_MAX_PAYLOAD_IN_MB)"
            )
        else:
            message = exc.description or exc.name
        return error_response(status, message)

    @app.errorhandler(Overloaded)
    def overloaded(exc: Overloaded) -> Response:
        return error_response(503, str(exc), {"Retry-After": str(exc.retry_after_s)})

    @app.errorhandler(FutureTimeout)
    def inference_timeout(exc: FutureTimeout) -> Response:
        message = f"inference did not finish within {settings.timeout_s}s"
        return error_response(503, message, {"Retry-After": "1"})

    @app.errorhandler(BatcherStopped)
    def batcher_stopped(exc: BatcherStopped) -> Response:
        return error_response(503, "the server is shutting down")

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception) -> Response:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return error_response(500, f"internal error: {type(exc).__name__}")

    return app
