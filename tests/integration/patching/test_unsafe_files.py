"""Every loader of the pack that reads .ckpt files through ComfyUI refuses a code-carrying pickle as possibly unsafe,
without running it, instead of calling it corrupt."""

import pytest

from animatelcm.devkit.weights import code_carrying_checkpoint
from animatelcm.patching.motion_injection import load_motion_model_file
from animatelcm.patching.motion_lora import load_motion_lora_file
from animatelcm.patching.sparse_control import load_sparse_control_file

LOADERS = {
    "motion model": lambda path: load_motion_model_file(str(path), path.name),
    "motion LoRA": lambda path: load_motion_lora_file(str(path), path.name, 1.0),
    "SparseCtrl": lambda path: load_sparse_control_file(str(path), path.name),
}


@pytest.mark.parametrize("loader", LOADERS.values(), ids=LOADERS.keys())
def test_a_code_carrying_ckpt_is_refused_as_unsafe_and_not_run(tmp_path, loader):
    path = code_carrying_checkpoint(tmp_path / "downloaded.ckpt", flag := tmp_path / "ran")
    with pytest.raises(ValueError, match=r"^downloaded\.ckpt: the file holds pickled Python objects besides tensors "
                                         r"\(it asks for io\.open\); they would run as code .* may be unsafe\. They "
                                         r"were not run"):
        loader(path)
    assert not flag.exists()
