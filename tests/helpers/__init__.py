"""What the tests share besides pytest fixtures: small models (:mod:`helpers.models`), probe sets
(:mod:`helpers.probes`) and the one way to build a quiet Lightning trainer (:mod:`helpers.trainers`).

``tests/`` is on ``sys.path`` under pytest (and ``tests/ddp_script.py`` puts it there), so tests import
``from helpers.models import NoisyClassifier``.
"""
