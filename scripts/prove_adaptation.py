"""The small-scale proof of teacher-free adaptation (AnimateLCM's third contribution), on the CPU: adapters for the
distilled student of the distillation proof, trained or adapted by consistency training without a teacher.

1. The distillation proof's teachers and decoupled student (scripts/prove_distillation.py's runs teacher_image,
   teacher_motion, stage1_image, stage2_motion, on paths from anywhere), trained here when --work lacks them.
2. Per condition (a per-frame layout: the shape's mask; an image: the first frame): a ControlNet / an I2V image encoder
   trained for the diffusion teacher; the same adapted teacher-free on the student; one trained teacher-free from
   scratch with the same budget.
3. One table: control accuracy (IoU of the generated shape with the given one), prompt accuracy, temporal
   consistency and sampling time, at 1, 2 and 4 steps, and the teacher with its adapter at DDIM 4 and 50.

    .dev/comfyui-0.33.0/venv/bin/python scripts/prove_adaptation.py --work .dev/artifacts/proof-adaptation \
        --student-scale 0.5        # the recorded table (docs/proof.md)
    .dev/comfyui-0.33.0/venv/bin/python scripts/prove_adaptation.py --student-scale 0.02 --scale 0.05 \
        --per-prompt 1 --classifier-steps 50 --classifiers 1 --work /tmp/adaptation-smoke   # every part, quickly
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import BOOTSTRAP, ROOT, import_comfyui  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=ROOT / ".dev" / "artifacts" / "proof-adaptation",
                        help="the run folders; the distillation proof's (--start anywhere) are reused if there")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--student-scale", type=float, default=1.0,
                        help="multiplies the steps of the student's runs, when they are trained here")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the adapter runs' steps")
    parser.add_argument("--per-prompt", type=int, default=1, help="clips per prompt (36 prompts) in the evaluation")
    parser.add_argument("--classifier-steps", type=int, default=1500)
    parser.add_argument("--classifiers", type=int, default=2, help="classifiers (seeds) each row averages")
    parser.add_argument("--reuse-videos", action="store_true",
                        help="score the clips an earlier evaluation saved in WORK/adaptation/videos instead of "
                             "sampling them again (only while no run has been retrained since)")
    options = parser.parse_args()
    import_comfyui()
    BOOTSTRAP["import_pack"]()
    import comfy.utils

    comfy.utils.PROGRESS_BAR_ENABLED = False
    from animatelcm.training.proof.adaptation import prove

    prove(options.work, options.frames, options.size, options.student_scale, options.scale, options.per_prompt,
          options.classifier_steps, options.classifiers, options.reuse_videos)


if __name__ == "__main__":
    main()
