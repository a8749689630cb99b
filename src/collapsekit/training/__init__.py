"""Training: a typed run configuration, the Fabric training loop, checkpoints and metrics."""

from collapsekit.training.config import (DataConfig, ModelConfig, ObjectiveConfig, OptimConfig, RunConfig,
                                         ScheduleConfig, TrainConfig)
from collapsekit.training.trainer import (RunResult, Trainer, TrainingData, TrainingDiverged, evaluate,
                                          load_training_data, train)

__all__ = ["DataConfig", "ModelConfig", "ObjectiveConfig", "OptimConfig", "RunConfig", "RunResult",
           "ScheduleConfig", "TrainConfig", "Trainer", "TrainingData", "TrainingDiverged", "evaluate",
           "load_training_data", "train"]
