"""The small-scale proof of the training recipe (docs/proof.md), run by scripts/prove_distillation.py: plan.py the
stage runs and their settings, evaluation.py the clip classifier and its metrics, comparison.py the table of every
model and sampler, run.py the whole experiment in order."""
