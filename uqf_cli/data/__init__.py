"""Datasets: the prepared dataset and its split (:mod:`.dataset`), and ``uqf prepare`` (:mod:`.prepare`)."""
