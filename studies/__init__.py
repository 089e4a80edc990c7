"""Research studies built on the gradient path: not agents, and not run by the benchmark.

* :mod:`studies.ude`: the forum post's Lotka–Volterra universal differential equation with a
  regulariser on the network's input derivative, and the symbolic recovery of its missing terms;
* :mod:`studies.gradients`: the variance and bias of first-order gradients against smoothed ones;
* :mod:`studies.design`: sequential optimal experimental design on :math:`du/dt = -\\theta u`.

Each has its command line in ``scripts/`` (``ude.py``, ``gradients.py``, ``design.py``).
"""
