"""Names and limits the training job, the launcher and the server share, in a module without torch.

The launcher runs on a laptop that has no torch; it checks data layouts and hyperparameters
against these same names before any AWS call.
"""

from __future__ import annotations

from pathlib import PurePosixPath

#: SageMaker's tree in a training or serving container (``SAGEMAKER_BASE_DIR`` moves it in tests).
OPT_ML = PurePosixPath("/opt/ml")
#: Where a training job keeps checkpoints, under OPT_ML: the launcher's CheckpointConfig.LocalPath.
CHECKPOINTS = "checkpoints"
#: Where the training job writes the model and the server reads it, under OPT_ML.
MODEL = "model"

#: The splits of a data set, and the folder or channel names each may go by.
SPLITS: tuple[str, ...] = ("train", "valid", "test")
SPLIT_ALIASES: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "valid": ("valid", "validation", "val"),
    "test": ("test",),
}
#: File suffixes the trainer reads as images (lower case); the launcher uploads only these.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
#: Residual stages from input to output; ``trainable=<stage>`` trains that stage and all after it.
STAGES: tuple[str, ...] = ("all", "layer1", "layer2", "layer3", "layer4", "head")

#: SageMaker's payload limits, in MiB: one real-time request (InvokeEndpoint), which is also the
#: server's and a batch transform's default; one batch transform request, which also bounds
#: MaxConcurrentTransforms x MaxPayloadInMB.
MIB = 1024 * 1024
REALTIME_MAX_PAYLOAD_MB = 6
BATCH_MAX_PAYLOAD_MB = 100
#: One Serverless Inference request (and response): 4 MB
#: (https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints-invoke.html).
SERVERLESS_MAX_PAYLOAD_MB = 4
#: One Asynchronous Inference request, read from S3: up to 1 GB
#: (https://docs.aws.amazon.com/sagemaker/latest/dg/async-inference.html).
ASYNC_MAX_PAYLOAD_MB = 1024

#: The network every artifact holds (model.json's ``architecture``).
ARCHITECTURE = "resnet18"
