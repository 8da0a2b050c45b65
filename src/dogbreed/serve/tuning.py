"""The server's internal tuning: constants, not settings; each value is the one a measurement chose.

Torch-free and import-free, so that every part of the server (the torch and ONNX Runtime runtimes
included) reads them without importing :mod:`.config` or :mod:`.runtime`.
"""

#: SageMaker sends SIGKILL 30 s after SIGTERM: in-flight requests get 25 s to finish.
GRACEFUL_TIMEOUT_S = 25
#: Request threads per worker. With 16, gthread queued /ping behind invocations: at 256 clients 17
#: of 18 probes took over 2 s; with 1,024 every connection of a 512-client spike gets a thread at
#: once and /ping stays within 2 s (p99 310-368 ms, docs/serving.md "Measured"). Admission keeps
#: 1/16 of them free (ServerSettings.max_waiting_requests).
THREADS_PER_WORKER = 1024
#: Keep-alive seconds for idle client connections. Not measured (set with the first server,
#: f51cf0f): idle connections hold no thread (gthread parks them in its poller).
KEEPALIVE_S = 5
#: How long a partial batch waits for announced requests: 5 ms (d6a75af); 2 ms measured worse and
#: 10 ms the same at concurrency 8 on 2 cores (benchmarks/README.md, "Tried and measured no gain").
MAX_BATCH_WAIT_S = 0.005
#: A 6 MB JPEG of a photo rarely exceeds 40 megapixels; anything larger is refused before decoding.
MAX_IMAGE_PIXELS = 40_000_000
#: Images in one JSON request. Not measured (f51cf0f): it bounds how much of a worker's queue one
#: request holds, since a JSON request's images are admitted together.
MAX_IMAGES_PER_REQUEST = 256
#: ``top_k`` when a request gives none; a request chooses its own with ``top_k=N``.
DEFAULT_TOP_K = 5
#: Full-size batches run before /ping turns 200, after one cold single-image pass. Not measured
#: (f51cf0f); admission control times images from these warm batches on, not the cold pass.
WARMUP_ROUNDS = 1
