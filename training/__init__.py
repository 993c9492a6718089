"""Training AnimateLCM (consistency distillation): importable and tested, never imported by the nodes at start-up."""
