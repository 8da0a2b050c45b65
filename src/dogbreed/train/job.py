"""The training job: hyperparameters -> data -> fine-tune loop -> artifacts.

Run by the sagemaker-training toolkit through :mod:`dogbreed.train.toolkit` as
``python -m dogbreed.train --lr 0.01 --batch-size 64 ...`` (or under torchrun for DDP).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import random
import signal
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.distributed import DistError
from torch.nn.parallel import DistributedDataParallel

from dogbreed import metrics
from dogbreed.artifact import ModelSpec, save_artifact
from dogbreed.atomic import DiskFullError
from dogbreed.export.common import ExportError
from dogbreed.export.process import export_environment, export_trained_model
from dogbreed.hyperparams import HyperparameterError, Hyperparameters, parse_hyperparameters
from dogbreed.image_folders import (
    DataError,
    Split,
    check_bad_fraction,
    check_classes,
    find_split_dirs,
    scan_split,
)
from dogbreed.imaging import IMAGENET_MEAN, IMAGENET_STD, eval_resize_size
from dogbreed.model import (
    WeightsError,
    backbone_frozen_bn,
    build_model,
    imagenet_weights_path,
    load_state_dict_file,
    set_trainable,
)
from dogbreed.train.checkpoint import (
    CheckpointError,
    TrainingState,
    load_checkpoint,
    remove_checkpoints,
    save_checkpoint,
)
from dogbreed.train.dataset import ImageDataset
from dogbreed.train.distributed import (
    PeerError,
    World,
    any_rank,
    describe_peer_failure,
    init_world,
    shutdown,
)
from dogbreed.train.engine import (
    EpochLog,
    EpochTotals,
    Precision,
    Step,
    StepOutOfMemory,
    evaluate,
    train_one_epoch,
)
from dogbreed.train.job_paths import JobPaths
from dogbreed.train.loader import (
    BatchLoader,
    LoaderError,
    TransitPlan,
    default_workers,
    diagnose,
    plan_transit,
    shm_free_bytes,
    stop_loader_processes,
)
from dogbreed.train.optim import build_optimizer, build_scheduler
from dogbreed.train.plots import plot_training_curves
from dogbreed.train.presets import eval_crop, train_crop
from dogbreed.train.sampling import EpochBatchSampler
from dogbreed.train.smdebug_hook import DebuggerHook, create_hook

log = logging.getLogger("dogbreed.train")

#: Exit code after a SIGTERM that was honoured with a checkpoint (128 + SIGTERM).
EXIT_STOPPED = 128 + signal.SIGTERM
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


class StopRequested(Exception):
    """Training was asked to stop (SIGTERM); raised on every rank at the same step."""


class StopFlag:
    """Set by SIGTERM; training checks it between steps."""

    def __init__(self) -> None:
        self.raised = False
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        log.warning("received SIGTERM: stopping after the current step")
        self.raised = True

    def __call__(self) -> bool:
        return self.raised


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_backbone(hp: Hyperparameters, paths: JobPaths) -> dict[str, torch.Tensor] | None:
    """ImageNet weights: the ``pretrained`` channel, a given path, the hub cache, or none."""
    if hp.pretrained == "false":
        log.info("pretrained=false: training from random initialisation")
        return None
    channel = paths.channels.get("pretrained")
    if hp.pretrained != "true":
        given = Path(hp.pretrained)
        candidates = [given] if given.is_absolute() or channel is None else [channel / given, given]
        path = next((p for p in candidates if p.exists()), candidates[0])
    elif channel is not None:
        files = sorted(p for p in channel.rglob("*") if p.suffix in WEIGHT_SUFFIXES)
        if len(files) != 1:
            raise WeightsError(
                f"the 'pretrained' channel ({channel}) must hold exactly one weights file"
                f" ({', '.join(WEIGHT_SUFFIXES)}); found {[p.name for p in files] or 'none'}"
            )
        path = files[0]
    else:
        path = imagenet_weights_path()
        if not path.is_file():
            raise WeightsError(
                f"pretrained=true but the ImageNet ResNet18 weights are not in the torch hub cache"
                f" ({path}); build the image with the weights baked in, give a 'pretrained'"
                " channel holding a state-dict file, or set pretrained=false"
            )
    log.info("loading backbone weights from %s", path)
    return load_state_dict_file(path)


def load_splits(hp: Hyperparameters, paths: JobPaths) -> tuple[dict[str, Split], list[str]]:
    splits = {
        name: scan_split(name, root) for name, root in find_split_dirs(paths.channels).items()
    }
    classes = check_classes(list(splits.values()))
    check_bad_fraction(list(splits.values()), hp.max_bad_fraction)
    if len(classes) < 2:
        raise DataError(f"need at least 2 classes to train a classifier; found {classes}")
    sizes = ", ".join(f"{n} {len(s.samples)}" for n, s in splits.items())
    log.info("data: %d classes; images per split: %s", len(classes), sizes)
    return splits, classes


def transit_plan(hp: Hyperparameters, world: World) -> TransitPlan:
    """How this rank's batches reach it, fitted to the shared memory the container has."""
    workers = default_workers(world.local_size) if hp.workers < 0 else hp.workers
    per_rank = max(1, hp.batch_size // world.size)
    plan, reason = plan_transit(
        per_rank, hp.image_size, workers, world.local_size, shm_free_bytes()
    )
    log.info(plan.describe(reason))
    return plan


def weights_digest(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def write_history(history: Sequence[dict[str, float]], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(list(history), indent=2) + "\n")
    with open(out_dir / "metrics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    plot_training_curves(history, out_dir / "training_curves.png")


class Trainer:
    """Holds the job's parts; :meth:`fit` runs the epochs, :meth:`finish` writes the results."""

    def __init__(self, hp: Hyperparameters, paths: JobPaths, world: World) -> None:
        self.hp, self.paths, self.world = hp, paths, world
        seed_everything(hp.seed)
        self.splits, self.classes = load_splits(hp, paths)
        backbone = resolve_backbone(hp, paths)
        model = build_model(len(self.classes), backbone)
        set_trainable(model, hp.trainable)
        self.frozen_bn = backbone_frozen_bn(model, hp.trainable)
        self.model = model.to(world.device, memory_format=torch.channels_last)
        self.net: nn.Module = (
            DistributedDataParallel(
                self.model, device_ids=[world.device] if world.device.type == "cuda" else None
            )
            if world.distributed
            else self.model
        )
        self.criterion = nn.CrossEntropyLoss(label_smoothing=hp.label_smoothing)
        self.optimizer = build_optimizer(self.model, hp)
        self.scheduler = build_scheduler(self.optimizer, hp)
        self.hook = create_hook(paths.debug_hook_config) if world.is_main else DebuggerHook()
        self.hook.register(self.model, self.criterion)
        precision = Precision.choose(world.device, hp.amp)
        self.step = Step(self.net, self.criterion, self.optimizer, precision, world, self.hook)
        self.stop = StopFlag()
        self.plan = transit_plan(hp, world)
        train = self.splits["train"]
        self.train_set = ImageDataset(
            train.samples, train_crop(hp.image_size), hp.image_size, seed=hp.seed
        )
        self.sampler = EpochBatchSampler(
            len(train.samples), self.plan.batch, hp.seed, world.rank, world.size
        )
        self.checkpoint_dir = paths.job_checkpoint_dir
        self.state = (
            load_checkpoint(
                self.checkpoint_dir, self.model, self.optimizer, self.scheduler, hp.to_dict()
            )
            or TrainingState()
        )

    def _batches(self, dataset: ImageDataset, batches: Iterable[list[int]]) -> BatchLoader:
        pin = self.world.device.type == "cuda"
        return BatchLoader(dataset, batches, self.plan, self.hp.stall_timeout, pin)

    def _eval_batches(self, split: Split) -> BatchLoader:
        """This rank's interleaved shard of a split, in order, with no padding."""
        shard = split.samples[self.world.rank :: self.world.size]
        size = self.hp.image_size
        dataset = ImageDataset(shard, eval_crop(size), eval_resize_size(size))
        step = self.plan.batch
        return self._batches(
            dataset, [list(range(i, min(i + step, len(shard)))) for i in range(0, len(shard), step)]
        )

    def _checkpoint(self) -> None:
        if self.world.is_main:
            save_checkpoint(
                self.checkpoint_dir,
                self.state,
                self.model,
                self.optimizer,
                self.scheduler,
                self.hp.to_dict(),
            )

    def _train_epoch(self, epoch: int) -> EpochTotals:
        state = self.state
        self.sampler.set_epoch(epoch, state.batches_done)
        self.train_set.epoch = epoch
        totals = EpochTotals(**state.partial) if state.batches_done else EpochTotals()
        self.net.train()
        for module in self.frozen_bn:
            module.eval()
        batches = self._batches(self.train_set, self.sampler)
        label = f"epoch {epoch + 1}/{self.hp.epochs}"
        log_to = EpochLog(
            label, state.batches_done, self.sampler.total_batches(), self.hp.log_interval
        )
        try:
            for done in train_one_epoch(self.step, batches, totals, log_to):
                state.batches_done, state.partial = done, asdict(totals)
                if any_rank(self.stop(), self.world):
                    raise StopRequested
            return totals
        except StopRequested:
            self._checkpoint()
            message = (
                f"stopped by SIGTERM in epoch {epoch + 1} after {state.batches_done} batches;"
                f" checkpoint written to {self.checkpoint_dir}: run the job again with the"
                " same checkpoint location to resume"
            )
            log.warning(message)
            if self.world.is_main:
                self.paths.write_failure(message, replace=False)
            raise

    def _end_epoch(self, epoch: int, train: EpochTotals) -> None:
        state, hp = self.state, self.hp
        train_all = train.reduced(self.world)
        valid = evaluate(self.step, self._eval_batches(self.splits["valid"]))
        row = {
            "epoch": epoch + 1,
            "train_loss": train_all.loss,
            "train_accuracy": train_all.accuracy,
            "valid_loss": valid.loss,
            "valid_accuracy": valid.accuracy,
            "lr": self.optimizer.param_groups[0]["lr"],
            "images_per_sec": train_all.count / max(train.seconds, 1e-9),
        }
        state.history.append(row)
        if self.world.is_main:
            print(metrics.format_metric_line(row), flush=True)
        if valid.accuracy > state.best_accuracy:
            state.best_accuracy, state.best_epoch = valid.accuracy, epoch + 1
            state.best_weights = {
                k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()
            }
            state.epochs_without_improvement = 0
        else:
            state.epochs_without_improvement += 1
        self.scheduler.step()
        state.epoch, state.batches_done, state.partial = epoch + 1, 0, {}
        if hp.patience and state.epochs_without_improvement >= hp.patience:
            log.info(
                "early stopping: no valid accuracy gain for %d epochs (best %.4f at epoch %d)",
                hp.patience,
                state.best_accuracy,
                state.best_epoch,
            )
            state.epoch = hp.epochs
        self._checkpoint()

    def fit(self) -> None:
        while self.state.epoch < self.hp.epochs:
            epoch = self.state.epoch
            train = self._train_epoch(epoch)
            self._end_epoch(epoch, train)

    def finish(self) -> dict[str, float]:
        """Test the best epoch's weights; rank 0 writes the model and the metric history."""
        state, hp = self.state, self.hp
        self.model.load_state_dict(state.best_weights)
        test = evaluate(self.step, self._eval_batches(self.splits["test"]))
        best = state.history[state.best_epoch - 1]
        # The kept model's validation figures again, last: tuning ranks a job by the latest
        # objective value it printed, which must be the model the artifact holds.
        final = {
            "epoch": state.best_epoch,
            "valid_loss": best["valid_loss"],
            "valid_accuracy": best["valid_accuracy"],
            "test_loss": test.loss,
            "test_accuracy": test.accuracy,
        }
        log.info("rank %d final weights sha256=%s", self.world.rank, weights_digest(self.model))
        if not self.world.is_main:
            return final
        print(metrics.format_metric_line(final), flush=True)
        spec = ModelSpec(
            class_names=self.classes,
            image_size=hp.image_size,
            mean=list(IMAGENET_MEAN),
            std=list(IMAGENET_STD),
            metrics={
                "best_epoch": state.best_epoch,
                "valid_accuracy": best["valid_accuracy"],
                "valid_loss": best["valid_loss"],
                "test_accuracy": test.accuracy,
                "test_loss": test.loss,
            },
            hyperparameters=hp.to_dict(),
        )
        save_artifact(self.paths.model_dir, self.model, spec)
        write_history(state.history, self.paths.output_data_dir)
        log.info("model written to %s (best epoch %d)", self.paths.model_dir, state.best_epoch)
        if hp.export:
            splits = self.splits
            export_trained_model(
                self.paths.model_dir, splits["train"].root, splits["valid"].root, hp.int8_max_drop
            )
        if self.paths.job_name:  # a tuning trial: what it leaves, every later trial copies in
            remove_checkpoints(self.checkpoint_dir)
            log.info("completed: removed this job's checkpoints (%s)", self.checkpoint_dir)
        return final


def out_of_memory_advice(exc: StepOutOfMemory, hp: Hyperparameters, world: World) -> str:
    where = "GPU" if exc.device.type == "cuda" else "host"
    smaller = max(1, hp.batch_size // 2)
    tries = [f"batch-size {smaller} or less (halve it until a step fits)"]
    if exc.device.type == "cuda" and not hp.amp:
        tries.append("amp=true")
    if hp.trainable == "all":
        tries.append("trainable=layer4 (fewer activations kept for the backward pass)")
    tries += [f"a smaller image-size than {hp.image_size}", f"an instance with more {where} memory"]
    return (
        f"{exc} with batch-size {hp.batch_size} ({exc.images} images per step on this rank,"
        f" {world.size} rank(s)) at image-size {hp.image_size}: the step does not fit the"
        f" {where} memory. Try {'; or '.join(tries)}."
    )


#: Where a training job's disk space comes from (the SageMaker docs' ResourceConfig.VolumeSizeInGB).
VOLUME_ADVICE = (
    "On SageMaker the training data (File mode), checkpoints, model and output share the "
    "instance's storage volume: raise its size (dogbreed's --volume-gb, the SDK's volume_size); "
    "instances with NVMe storage (ml.g4dn, ml.g5, ml.p4d) have a fixed size: pick a larger one"
)


def failure_message(exc: BaseException, hp: Hyperparameters | None, world: World) -> str | None:
    """The cause and fix of a failure we recognise, or None for an unexpected one."""
    if isinstance(
        exc, (HyperparameterError, DataError, WeightsError, CheckpointError, ExportError)
    ):
        return f"{type(exc).__name__}: {exc}"
    if isinstance(exc, DiskFullError):
        return f"DiskFull: {exc}. {VOLUME_ADVICE}"
    if isinstance(exc, StepOutOfMemory) and hp is not None:
        return f"OutOfMemory: {out_of_memory_advice(exc, hp, world)}"
    if isinstance(exc, (LoaderError, PeerError)):
        return f"{type(exc).__name__}: {exc}"
    loader = diagnose(exc, hp.stall_timeout if hp else 0.0)  # raised by the SIGCHLD handler
    if loader is not None:
        return f"LoaderError: {loader}"
    if world.distributed and isinstance(exc, DistError):
        return f"PeerError: {describe_peer_failure(exc, world)}"
    return None


def run(argv: Sequence[str]) -> int:
    """Run the job; returns the process exit code."""
    paths = JobPaths.from_env()
    world, hp = World(), None
    try:
        hp = parse_hyperparameters(argv)
        log.info("hyperparameters: %s", json.dumps(hp.to_dict(), sort_keys=True))
        if hp.export:
            export_environment()  # fails now, not after training, where the export cannot run
        world = init_world(hp.stall_timeout)
        trainer = Trainer(hp, paths, world)
        started = time.perf_counter()
        trainer.fit()
        trainer.finish()
        trainer.hook.close()
        log.info("training finished in %.1f s", time.perf_counter() - started)
        shutdown(world)
        return 0
    except StopRequested:
        return EXIT_STOPPED
    except Exception as exc:
        message = failure_message(exc, hp, world)
        prefix = f"rank {world.rank}: " if world.distributed else ""
        paths.write_failure(prefix + (message or f"unexpected {type(exc).__name__}: {exc}"), False)
        if message is None:
            raise
        log.error(message)
        return 2
    finally:
        stop_loader_processes()


def configure_logging() -> None:
    rank = os.environ.get("RANK")
    prefix = (
        f"[rank {rank}] " if rank is not None and os.environ.get("WORLD_SIZE", "1") != "1" else ""
    )
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stdout,
        format=f"%(asctime)s %(levelname)s {prefix}%(name)s: %(message)s",
        force=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    return run(sys.argv[1:] if argv is None else argv)
