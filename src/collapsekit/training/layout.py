"""The names of a run directory's parts, in one place for the trainer, resume and every reader of a run."""

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
