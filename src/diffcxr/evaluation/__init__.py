"""Evaluation drivers over the pure metrics of :mod:`diffcxr.metrics`: ``diffcxr evaluate``
(:mod:`~diffcxr.evaluation.evaluate`), report adherence of a trained pipeline (:mod:`~diffcxr.evaluation.adherence`),
laterality adherence on phantoms (:mod:`~diffcxr.evaluation.laterality`) and the downstream "few real + synthetic"
study (:mod:`~diffcxr.evaluation.downstream`)."""
