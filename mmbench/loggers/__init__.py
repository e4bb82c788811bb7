"""Experiment loggers: one small protocol, one module per backend, chosen by ``logger=``.

The engine only calls :class:`~mmbench.loggers.base.ExperimentLogger` methods; which
backends run is the ``logger`` config group (conf/logger/*.yaml, each entry a
``_target_``), built by :func:`~mmbench.loggers.group.build_logger`. Importing this package
imports no backend library: tensorboard, mlflow and wandb are imported only when chosen.
"""
