"""The SkinSense engine: plain PyTorch, no Django, no Celery.

The network and its checkpoint (``model``), data sets and splits (``data``), training
(``train``), metrics (``eval``) and serving (``serve``). Usable from a notebook or a training box;
the Django app ``ml`` wraps it. An import-linter contract in ``make test`` keeps it free of Django.
"""
