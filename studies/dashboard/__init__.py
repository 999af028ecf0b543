"""`nas dashboard`: one self-contained HTML page about a study (plotly.js inlined, works offline).

Compute first, draw second: the functions above the "drawing" line are pure functions of pandas
frames (or of a study, read once) and are unit-tested; the drawing functions only turn their
output into plotly figures and HTML.

    >>> from studies.dashboard import write_dashboard
    >>> write_dashboard(study, "study.html", compare=random_study)   # doctest: +SKIP

What the page shows:

- Pareto fronts of the first metric (accuracy, or a proxy score) against MACs, params and, when
  measured, latency: feasible trials coloured by stage layout, the 2-D front as a step line,
  stopped trials at their last partial accuracy, over-budget and failed trials in a strip below
  (they have no accuracy), the budgets as dashed lines, and the space's published
  architectures: at their own trial's value when the study evaluated them (seeded presets),
  otherwise as a labelled vertical marker at their MACs / params (accuracy unknown here).
- Hypervolume of the accuracy-vs-MACs front after each evaluated candidate, for this study and
  for a second study given with ``compare`` (e.g. the same search run with ``--sampler random``),
  both against one reference point.
- Design-space views: EDFs of accuracy per stage layout and per searched dimension (binned), as
  in Radosavovic et al., "Designing Network Design Spaces"; parameter importances (PED-ANOVA).
- A sortable table of every trial.
"""

from studies.dashboard.data import *  # noqa: F401,F403
from studies.dashboard.page import build_dashboard, write_dashboard  # noqa: F401
