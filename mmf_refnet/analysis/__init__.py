"""Analyses of ReFNet models (paper §4, §8).

Kept import-light on purpose: importing this package imports none of its
submodules, so neither torch-heavy code nor matplotlib is loaded until used.
Import the one you need, e.g. ``from mmf_refnet.analysis import graph`` for
latent graph induction (Theorem 4.1 / Corollary 4.1): the synthetic experiment
and the analysis of trained models' embeddings.
"""
