"""Integrations with other libraries' training loops (issue 12).

* :mod:`.pythae` — :class:`~collapsekit.integrations.pythae.PythaeCollapseMonitor`, a Pythae
  ``TrainingCallback`` that runs collapsekit's :class:`~collapsekit.training.CollapseMonitor` inside Pythae's
  trainer (imports Pythae; ``pip install 'collapsekit[pythae]'``).

Lightning's callback lives beside the monitor (``collapsekit.training.lightning_callback``); a plain loop
calls the monitor's ``update``/``end_epoch`` (docs/integrations.md). Nothing here is imported by
``import collapsekit``: each module imports its library when it is imported.
"""
