"""The machinery behind ``collapsekit reproduce``: one runner per experiment of the paper.

The registry and the combined report live in :mod:`collapsekit.experiments.presets` (the command
line in :mod:`collapsekit.cli.reproduce`); this package holds what a preset is (:mod:`.preset`),
what the presets share (:mod:`.core`: scales, training through sweeps, measurement, output files,
verdicts), their figures (:mod:`.figures`) and the runners by model family (:mod:`.cvae`,
:mod:`.vae`, :mod:`.mhvae`, :mod:`.theorems`). Runner modules import torch; nothing here is imported until a
preset runs.
"""
