"""The launcher's defaults, written once: the command line and the request builders both read them.

Free of boto3 and the SageMaker SDK, so ``dogbreed --help`` can show them without loading either.
"""

from __future__ import annotations

#: Training (and tuning trials): one T4 GPU.
TRAINING_INSTANCE_TYPE = "ml.g4dn.xlarge"
#: Real-time endpoints and batch transform: CPU serving.
SERVING_INSTANCE_TYPE = "ml.m5.large"
#: EBS volume per training instance, in GB.
VOLUME_GB = 30
#: A training job's MaxRuntimeInSeconds.
MAX_RUNTIME_S = 4 * 3600

#: Steps between the tensors the smdebug hook saves, per collection.
LOSSES_INTERVAL = 10
WEIGHTS_INTERVAL = 100
GRADIENTS_INTERVAL = 100

#: Tag on every model, endpoint config and endpoint the launcher creates, so `dogbreed endpoints`
#: finds the live ones (and their cost) among an account's others.
TOOL_TAG = {"Key": "dogbreed:created-by", "Value": "dogbreed"}
