"""ALCM_LoadSVDUNet: the AnimateLCM-SVD-xt UNet (diffusers layout) in ComfyUI's SVD MODEL.

Parity: diffusers' own UNetSpatioTemporalConditionModel holding random weights, against ComfyUI's SVD_img2vid at
the same (tiny) width holding OTHER random weights, patched by the node from the diffusers-layout file. Both get
the same noisy latent, image latent, CLIP-vision embedding, noise level and added time ids. ComfyUI's side runs
its own code from the conditioning values on: `SVD_img2vid.extra_conds` (fps-1 / motion bucket / augmentation
-> `y` through `encode_adm`, the image latent as c_concat, the frame count) and `apply_model` (c_in scaling, the
concat, c_noise = 0.25 ln sigma); a DIFFUSION_MODEL wrapper records the raw UNet output. diffusers gets the
scaled latent concatenated with the image latent, the timestep 0.25 ln sigma and the ids (fps - 1, motion bucket,
augmentation), as its SVD pipeline passes them. The image-only indicator, which diffusers' forward fixes at 0,
is set on its down/mid/up blocks through forward pre-hooks for the value 1.
"""

import pytest
import torch
from safetensors.torch import save_file

import comfy.model_management
import comfy.utils
import folder_paths
from comfy.patcher_extension import WrappersMP

from animatelcm.motion_models.svd_unet import SVDUNetFormatError, convert_svd_unet, svd_key_map
from animatelcm.nodes.svd import LoadSVDUNet
from animatelcm.patching.svd_weights import _patch_value
from animatelcm.devkit import motion_modules as mm, svd_unet as fx
from animatelcm.devkit.comfy import tiny_sd15_model
from animatelcm.devkit.weights import code_carrying_checkpoint

TOLERANCE = 1e-4  # max abs difference of the raw UNet output, float32
FRAMES, HEIGHT, WIDTH = 4, 8, 8  # three downsamplings: 1x1 at the deepest level
SIGMA = 13.6784  # a point of the AnimateLCM-SVD grid (docs/reference.md, section 5)
FPS, MOTION_BUCKET, AUGMENTATION = 7, 127, 0.02
NAME = fx.SVD_XT_NAME
TEMPORAL = ("time_stack", "time_mixer", "time_pos_embed")


@pytest.fixture(scope="module")
def weights():
    return fx.diffusers_state_dict(fx.TINY_CONFIG, seed=0)


@pytest.fixture(scope="module")
def reference(weights):
    return fx.diffusers_unet(weights, fx.TINY_CONFIG)


@pytest.fixture(scope="module")
def base_model():
    return fx.tiny_svd_model(seed=1)


@pytest.fixture(scope="module")
def unet_dir(tmp_path_factory, weights):
    """models/diffusion_models: the tiny AnimateLCM-SVD-xt file (float32 and float16) and files to refuse."""
    folder = tmp_path_factory.mktemp("diffusion_models")
    save_file(weights, str(folder / NAME))
    half = {k: v.half() for k, v in weights.items()}  # the other copies: float16, half the disk
    save_file(half, str(folder / "AnimateLCM-SVD-xt-fp16.safetensors"))
    swapped = dict(half)  # the query and key projections of one temporal attention exchanged
    prefix = "down_blocks.1.attentions.1.temporal_transformer_blocks.0.attn1."
    swapped[prefix + "to_q.weight"], swapped[prefix + "to_k.weight"] = half[prefix + "to_k.weight"], half[
        prefix + "to_q.weight"]
    save_file(swapped, str(folder / "swapped.safetensors"))
    save_file(fx.zeros(fx.sd_unet_diffusers_layout("sd15")), str(folder / "sd15_unet.safetensors"))
    save_file(fx.zeros(fx.sd_unet_diffusers_layout("sdxl")), str(folder / "sdxl_unet.safetensors"))
    save_file(fx.zeros(mm.motion_module_layout("animatelcm_t2v", mm.TINY_WIDTH)),
              str(folder / "AnimateLCM_sd15_t2v.safetensors"))
    save_file({k: v for k, v in half.items() if k != "mid_block.resnets.1.time_mixer.mix_factor"},
              str(folder / "missing.safetensors"))
    misshaped = dict(half, **{"conv_out.weight": torch.zeros(4, 32, 3, 3)})
    save_file(misshaped, str(folder / "misshaped.safetensors"))
    (folder / "damaged.safetensors").write_bytes((folder / NAME).read_bytes()[:5000])
    code_carrying_checkpoint(folder / "unsafe.ckpt", folder / "ran")
    return folder


@pytest.fixture
def unet_folder(unet_dir, monkeypatch):
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "diffusion_models",
                        ([str(unet_dir)], folder_paths.supported_pt_extensions))
    monkeypatch.setattr(folder_paths, "filename_list_cache", {})
    return unet_dir


def load(model, unet_name):
    return LoadSVDUNet.execute(model=model, unet_name=unet_name).args[0]


def inputs():
    gen = torch.Generator().manual_seed(7)
    image_latent = torch.randn(1, 4, HEIGHT, WIDTH, generator=gen)
    noisy = image_latent + SIGMA * torch.randn(FRAMES, 4, HEIGHT, WIDTH, generator=gen)
    clip_embed = torch.randn(1, 1, 1024, generator=gen)  # CLIP-vision image embedding, as SVD conditioning has it
    return noisy, image_latent, clip_embed


def comfy_unet_output(model, indicator):
    """The raw UNet output of ComfyUI's SVD model for `inputs()`, through extra_conds and apply_model."""
    noisy, image_latent, clip_embed = inputs()
    comfy.model_management.load_models_gpu([model])  # applies the clone's weight patches
    svd = model.model
    conds = svd.extra_conds(noise=noisy, concat_latent_image=image_latent, cross_attn=clip_embed, fps=FPS,
                            motion_bucket_id=MOTION_BUCKET, augmentation_level=AUGMENTATION)
    kwargs = {k: cond.process_cond(batch_size=FRAMES, area=None).cond for k, cond in conds.items()}
    assert kwargs["y"].shape == (FRAMES, 768) and kwargs["num_video_frames"] == FRAMES
    if indicator is not None:
        kwargs["image_only_indicator"] = torch.full((1, FRAMES), float(indicator))
    recorded = []

    def record(executor, *args, **kw):
        recorded.append(executor(*args, **kw))
        return recorded[-1]

    options = {"wrappers": {WrappersMP.DIFFUSION_MODEL: {"svd-parity": [record]}}}
    with torch.no_grad():
        denoised = svd.apply_model(noisy, torch.full((FRAMES,), SIGMA), transformer_options=options, **kwargs)
    [out] = recorded
    c_skip, c_out = 1 / (SIGMA ** 2 + 1), -SIGMA / (SIGMA ** 2 + 1) ** 0.5  # EDM v-prediction
    torch.testing.assert_close(denoised, c_skip * noisy + c_out * out, rtol=1e-5, atol=1e-5)
    return out


def diffusers_output(reference, indicator):
    noisy, image_latent, clip_embed = inputs()
    scaled = noisy / (SIGMA ** 2 + 1) ** 0.5
    sample = torch.cat([scaled, image_latent.expand(FRAMES, -1, -1, -1)], dim=1)[None]
    timestep = torch.tensor([0.25 * torch.log(torch.tensor(SIGMA)).item()])
    added_time_ids = torch.tensor([[FPS - 1, MOTION_BUCKET, AUGMENTATION]], dtype=torch.float32)

    def set_indicator(module, args, kwargs):
        kwargs["image_only_indicator"] = torch.full_like(kwargs["image_only_indicator"], float(indicator))
        return args, kwargs

    hooks = [block.register_forward_pre_hook(set_indicator, with_kwargs=True)
             for block in (*reference.down_blocks, reference.mid_block, *reference.up_blocks)]
    try:
        with torch.no_grad():
            return reference(sample, timestep, clip_embed, added_time_ids).sample[0]
    finally:
        for hook in hooks:
            hook.remove()


@pytest.fixture(scope="module")
def reference_outputs(reference):
    return {indicator: diffusers_output(reference, indicator) for indicator in (0, 1)}


@pytest.mark.parametrize("indicator", [0, 1])
def test_the_patched_model_matches_diffusers(base_model, reference_outputs, unet_folder, indicator):
    patched = load(base_model, NAME)
    out = comfy_unet_output(patched, indicator)
    expected = reference_outputs[indicator]
    assert expected.abs().max() > 0.5 and expected.std() > 0.1  # a non-trivial output
    diff = (out - expected).abs().max().item()
    print(f"image_only_indicator={indicator}: max abs diff {diff:.3g} (output max {expected.abs().max():.3g})")
    assert diff <= TOLERANCE
    if indicator == 0:  # ComfyUI's sampling passes no indicator: the same as all zeros
        assert torch.equal(comfy_unet_output(patched, None), out)
    comfy.model_management.unload_all_models()


def test_the_indicator_and_the_temporal_layers_matter(reference_outputs):
    # indicator 1 runs each frame as an image (the temporal layers bypassed): a different output
    difference = (reference_outputs[0] - reference_outputs[1]).abs().max()
    print(f"image_only_indicator 0 vs 1: max abs diff {difference:.3g}")
    assert difference > 100 * TOLERANCE


def test_negative_controls_break_parity(base_model, reference_outputs, unet_folder, weights):
    """The comparison can fail: exchanged weights, or the temporal weights left unmapped, change the output."""
    swapped = (comfy_unet_output(load(base_model, "swapped.safetensors"), 0) - reference_outputs[0]).abs().max()
    print(f"swapped q/k in one temporal attention: max abs diff {swapped:.3g}")
    assert swapped > 100 * TOLERANCE

    spatial_only = base_model.clone()  # the node's converted weights without the temporal ones
    expected = {k.removeprefix("diffusion_model."): tuple(v.shape)
                for k, v in base_model.model_state_dict("diffusion_model.").items()}
    key_map = svd_key_map(comfy.utils.unet_to_diffusers(base_model.model.model_config.unet_config))
    converted = convert_svd_unet(weights, key_map, expected, NAME)
    spatial_only.add_patches({f"diffusion_model.{k}": ("set", (v,)) for k, v in converted.items()
                              if not any(part in k for part in TEMPORAL)})
    unmapped = (comfy_unet_output(spatial_only, 0) - reference_outputs[0]).abs().max()
    print(f"temporal weights not mapped: max abs diff {unmapped:.3g}")
    assert unmapped > 100 * TOLERANCE
    comfy.model_management.unload_all_models()


def test_the_input_model_is_untouched_and_unloading_restores_it(base_model, unet_folder):
    before = {k: v.clone() for k, v in base_model.model_state_dict().items()}
    patches, uuid = dict(base_model.patches), base_model.patches_uuid
    patched = load(base_model, NAME)
    assert base_model.patches == patches and base_model.patches_uuid == uuid
    unet_keys = [k for k in before if k.startswith("diffusion_model.")]
    assert patched is not base_model and patched.patches.keys() == set(unet_keys)
    assert all(patch[0][1][0] == "set" for patch in patched.patches.values())

    comfy.model_management.load_models_gpu([patched])  # the weights are replaced while the clone is loaded ...
    key = "diffusion_model.input_blocks.1.0.time_stack.in_layers.2.weight"
    assert not torch.equal(base_model.model.state_dict()[key], before[key])
    comfy.model_management.unload_all_models()  # ... and restored when it is unloaded
    after = base_model.model_state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    assert base_model.patches == patches and base_model.patches_uuid == uuid


def test_a_float16_file_sets_float16_values_in_a_float32_model(base_model, unet_folder, weights):
    patched = load(base_model, "AnimateLCM-SVD-xt-fp16.safetensors")
    comfy.model_management.load_models_gpu([patched])
    unet = patched.model.diffusion_model.state_dict()
    for diffusers_key, sgm_key in (
            ("conv_in.weight", "input_blocks.0.0.weight"),
            ("mid_block.attentions.0.time_mixer.mix_factor", "middle_block.1.time_mixer.mix_factor"),
            ("add_embedding.linear_2.bias", "label_emb.0.2.bias")):
        assert unet[sgm_key].dtype == torch.float32
        assert torch.equal(unet[sgm_key], weights[diffusers_key].half().float())
    comfy.model_management.unload_all_models()


def test_patches_take_the_models_dtype_only_when_it_is_smaller():
    fp32, fp16, bf16 = torch.ones(2), torch.ones(2, dtype=torch.float16), torch.ones(2, dtype=torch.bfloat16)
    assert _patch_value(fp32, fp16).dtype == torch.float16  # an fp32 file for an fp16 MODEL: half the memory
    assert _patch_value(fp32, bf16).dtype == torch.bfloat16
    assert _patch_value(fp16, fp32) is fp16  # kept as read: "set" copies it into the float32 weight
    assert _patch_value(fp16, torch.ones(2).to(torch.float8_e4m3fn)) is fp16  # fp8 rounding is ComfyUI's to do


def rejected(model, unet_name, *fragments, error=SVDUNetFormatError):
    with pytest.raises(error) as raised:
        load(model, unet_name)
    message = str(raised.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


EXPECTED = "expected the AnimateLCM-SVD-xt UNet (diffusers UNetSpatioTemporalConditionModel keys"


def test_other_files_are_refused_with_their_name_and_what_they_are(base_model, unet_folder):
    rejected(base_model, "sd15_unet.safetensors", "sd15_unet.safetensors: this is an SD1.5 UNet in diffusers layout",
             EXPECTED, "models/diffusion_models")
    rejected(base_model, "sdxl_unet.safetensors", "sdxl_unet.safetensors: this is an SDXL UNet in diffusers layout",
             EXPECTED)
    rejected(base_model, "AnimateLCM_sd15_t2v.safetensors",
             "AnimateLCM_sd15_t2v.safetensors: this is a motion module", "models/animatediff_models",
             "Load AnimateLCM Motion Model")
    rejected(base_model, "missing.safetensors", "missing.safetensors: not an AnimateLCM-SVD-xt UNet that fits",
             "1 missing key (mid_block.resnets.1.time_mixer.mix_factor)", "download AnimateLCM-SVD-xt again")
    rejected(base_model, "misshaped.safetensors", "misshaped.safetensors: not an AnimateLCM-SVD-xt UNet that fits",
             "1 key with the wrong shape (conv_out.weight expected [4, 64, 3, 3] found [4, 32, 3, 3])")
    rejected(base_model, "damaged.safetensors", "damaged.safetensors: cannot read the file",
             "corrupt, incomplete (download it again)")
    rejected(base_model, "unsafe.ckpt", "unsafe.ckpt: the file holds pickled Python objects besides tensors",
             "may be unsafe. They were not run")
    assert not (unet_folder / "ran").exists()
    assert base_model.patches == {}


def test_a_model_that_is_not_svd_is_refused_before_the_file_is_read(unet_folder):
    sd15 = tiny_sd15_model()
    rejected(sd15, "damaged.safetensors", "the MODEL is BaseModel (SD15), not Stable Video Diffusion",
             "Load svd_xt.safetensors with Image Only Checkpoint Loader", error=ValueError)


def test_a_model_with_weight_patches_is_refused(base_model, unet_folder):
    patched = load(base_model, NAME)
    rejected(patched, NAME, "the MODEL already carries weight patches on",
             "Connect LoRA loaders after this node", error=ValueError)


def test_schema_lists_the_diffusion_models_folder(unet_folder):
    schema = LoadSVDUNet.GET_SCHEMA()
    assert (schema.node_id, schema.display_name, schema.category) == (
        "ALCM_LoadSVDUNet", "AnimateLCM Load SVD-xt UNet", "AnimateLCM/SVD")
    model_input, name_input = schema.inputs
    assert (model_input.id, name_input.id) == ("model", "unet_name")
    assert NAME in name_input.options and "sd15_unet.safetensors" in name_input.options
    assert [output.io_type for output in schema.outputs] == ["MODEL"]
