"""The small-scale proof of AnimateLCM's training recipe, on the CPU: does a consistency-distilled student at 1-4 steps
match its teacher at 50, where the teacher's own few-step samplers fail?

1. A synthetic captioned dataset (training/shapes.py: coloured shapes moving in a stated direction) and a classifier
   trained on real clips of it, which reads shape, colour and direction back from a clip (prompt accuracy), and a
   temporal-consistency score from its frame embeddings (training/proof/evaluation.py).
2. A small teacher of the SD1.5 family trained here (reduced width, pixel space, the pack's motion module): image UNet
   first, then its motion module (the video teacher), as ordinary diffusion models.
3. Stage 1 (spatial LoRA), stage 2 (motion module; LoRA in the online model only, the paper's initialisation), stage 2
   with the LoRA merged into the target too, and direct one-stage distillation with the steps of stages 1 + 2.
   On centre data (CENTRE_PLAN) their motion modules start from the teacher's, and the paper's zero start is one
   more stage-2 row.
4. One table: every model and sampler on the same noise, prompts and classifiers.

    .dev/comfyui-0.33.0/venv/bin/python scripts/prove_distillation.py                # about 2.5 hours on 2 cores
    .dev/comfyui-0.33.0/venv/bin/python scripts/prove_distillation.py --scale 0.05   # a quick run through every part
    .dev/comfyui-0.33.0/venv/bin/python scripts/prove_distillation.py --start centre --work .dev/artifacts/proof-centre
                                   # paths from the centre (training/shapes.py), v-weighted motion teacher: the
                                   # recorded table (docs/proof.md), about 3.8 hours on 2 cores

Each stage resumes from its run folder (--work), so an interrupted proof continues where it stopped. On centre data
the video teacher must follow the direction word before anything is distilled from it (--min-teacher-direction).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import BOOTSTRAP, ROOT, import_comfyui  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=ROOT / ".dev" / "artifacts" / "proof")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=32)
    # the plans' names (training/proof/plan.py, PLANS), spelt out: the pack is imported once the options are read
    parser.add_argument("--start", default="anywhere", choices=["anywhere", "centre"],
                        help="where the shapes' paths start (training/shapes.py, STARTS), and the stages' plan "
                             "(training/proof/plan.py: PLAN, CENTRE_PLAN); a new --work for each")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every stage's steps (0.05: smoke run)")
    parser.add_argument("--per-prompt", type=int, default=2, help="clips per prompt (36 prompts) in the evaluation")
    parser.add_argument("--classifier-steps", type=int, default=1500)
    parser.add_argument("--classifiers", type=int, default=3,
                        help="classifiers (seeds) whose scores each row averages; the table gives their spread")
    parser.add_argument("--min-teacher-direction", type=float, default=None,
                        help="direction accuracy (chance 25) the video teacher must reach at DDIM-4 before the first "
                             "distillation step, checked once (default: 50 for --start centre, 0 = no check for "
                             "anywhere, where direction cannot be learnt)")
    parser.add_argument("--reuse-videos", action="store_true",
                        help="score the clips an earlier evaluation saved in WORK/evaluation instead of sampling them "
                             "again (only while no stage has been retrained since)")
    options = parser.parse_args()
    import_comfyui()
    BOOTSTRAP["import_pack"]()
    import comfy.utils

    comfy.utils.PROGRESS_BAR_ENABLED = False
    from animatelcm.training.proof.run import Options, prove

    prove(Options(**vars(options)))


if __name__ == "__main__":
    main()
