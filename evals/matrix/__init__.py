"""The comparison matrix: labelled traces by eval versions, its SQL index and cache.

Domain rules it applies (``cell_state``) live in ``evals.metrics.agreement``.
"""
