"""Training: a typed run configuration, the Fabric training loop, checkpoints and metrics."""

from collapsekit.training.checkpoint import CheckpointWarning, CorruptCheckpointError
from collapsekit.training.config import (DataConfig, ModelConfig, ObjectiveConfig, OptimConfig, RunConfig,
                                         ScheduleConfig, TrainConfig)
from collapsekit.training.monitor import CollapseMonitor, CollapseWarning, lightning_callback
from collapsekit.training.resume import resolve_config, resume_hint
from collapsekit.training.trainer import (RunResult, Trainer, TrainingData, TrainingDiverged, evaluate,
                                          load_training_data, train)

__all__ = ["CheckpointWarning", "CollapseMonitor", "CollapseWarning", "CorruptCheckpointError", "DataConfig",
           "ModelConfig", "ObjectiveConfig", "OptimConfig", "RunConfig", "RunResult", "ScheduleConfig", "TrainConfig",
           "Trainer", "TrainingData", "TrainingDiverged", "evaluate", "lightning_callback", "load_training_data",
           "resolve_config", "resume_hint", "train"]
