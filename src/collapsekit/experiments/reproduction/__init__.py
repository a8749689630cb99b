"""The machinery behind ``collapsekit reproduce``: one runner per experiment of the paper.

The registry and the combined report live in :mod:`collapsekit.experiments.presets` (the command
line in :mod:`collapsekit.cli.reproduce`); this package holds what a preset is (:mod:`.preset`),
what the presets share (one module per job: :mod:`.context` the scale, data and notes of a run;
:mod:`.runs` training through sweeps and measurement; :mod:`.closed_form` the theory's curves;
:mod:`.verdicts`; :mod:`.outputs` the tables and files; :mod:`.core` re-exports them all), the
shared axis sweeps (:mod:`.grids`) and the runners by model family (:mod:`.cvae`,
:mod:`.vae`, :mod:`.mhvae`, :mod:`.theorems`); their figures are drawn by
:mod:`collapsekit.viz.reproduction`. Runner modules import torch; nothing here is imported until a
preset runs.
"""
