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
#: Seconds from a request's first byte to the end of its headers (issue 21). Until its headers are
#: complete a connection waits in the worker's poller, not on a thread: 1,100 clients sending a
#: header byte every 20 s held every thread of a worker (/ping timed out for 60 s).
HEADER_TIMEOUT_S = 10.0
#: A body must arrive within max(BODY_TIMEOUT_S, its Content-Length / BODY_MIN_BYTES_PER_S) of the
#: end of its headers (a chunked one: of the bytes received so far), else 408 and the connection
#: closes. 6 MB at 1 MB/s is 6 s: the 30 s floor is for slow links, and half the 60 s that
#: SageMaker gives the whole request.
BODY_TIMEOUT_S = 30.0
BODY_MIN_BYTES_PER_S = 1_000_000
#: Share of a worker's request threads that may wait for bodies still arriving at once; beyond it
#: a request whose body is not yet here gets 503 at once. A quarter (256 of 1,024) leaves the
#: others to /ping and to requests whose bodies came with their headers.
BODY_THREAD_SHARE = 0.25
#: Bytes of request bodies a worker holds at once (at least one largest body), each counted with
#: the 1 MiB its reads take besides (BODY_READ_OVERHEAD_BYTES): a request that would go over gets
#: 503 + Retry-After before its body is read. 200 clients each holding a 6 MB body short by one
#: byte raised a worker by 838 MiB, never returned; with 256 MiB (42 held bodies) the worker
#: peaked at +441 MiB (glibc malloc: ~10.5 MiB per held 6 MB body), so 192 MiB: 27 such bodies.
BODY_BUDGET_BYTES = 192 * 1024 * 1024
BODY_READ_OVERHEAD_BYTES = 1024 * 1024
#: A raw image body larger than this (or chunked) is written to a temporary file as it arrives
#: (:mod:`.request_body`), not held: 4 raw 200 MB bodies at once (an asynchronous endpoint takes
#: 1 GB) raised a worker by 1,013 MiB, 625 MiB never returned. Above real-time's 6 MB, so a
#: real-time body never touches the disk.
SPOOL_ABOVE_BYTES = 8 * 1024 * 1024
#: Bytes of spooled bodies one worker keeps on disk at once (besides the free space TMPDIR must
#: have): two of an asynchronous endpoint's largest, 1 GiB, payloads.
SPOOL_BUDGET_BYTES = 2 * 1024 * 1024 * 1024
#: A JSON body is parsed in memory (the document, its strings, the decoded images): at most batch
#: transform's largest payload (MaxPayloadInMB <= 100). Only an asynchronous endpoint sends more,
#: and a large image goes there raw (``dogbreed invoke`` does), where it spools.
MAX_JSON_BODY_BYTES = 100 * 1024 * 1024
#: Decoded pixels of one request's images together (a JPEG counted at the scale it decodes at):
#: two of the largest images. 30 PNGs of 40 MP in one 1.5 MB body took 8 s to decode and held
#: every request beside them as long.
MAX_REQUEST_PIXELS = 2 * MAX_IMAGE_PIXELS
