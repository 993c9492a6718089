"""The batch client's reading of the server: errors in one line, output files, where downloads go, server URLs."""

import pytest

from animatelcm.cli.batch_client.client import (execution_error_text, local_path, output_files, rejection_text,
                                                server_urls)
from animatelcm.cli.batch_client.workflow import UsageError


def test_rejection_text_names_the_node_the_input_and_the_limit():
    body = {"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                      "details": "", "extra_info": {}},
            "node_errors": {"7": {"errors": [{"type": "value_smaller_than_min", "message": "Value 3 smaller than min "
                                              "of 16", "details": "width", "extra_info": {}}],
                                  "dependent_outputs": ["11"], "class_type": "EmptyLatentImage"}}}
    assert rejection_text(body) == ("Prompt outputs failed validation | node 7 (EmptyLatentImage): "
                                       "width: Value 3 smaller than min of 16")
    assert rejection_text({"error": {"message": "No prompt provided", "details": "No prompt provided"},
                              "node_errors": {}}) == "No prompt provided: No prompt provided"

def test_execution_errors_name_the_node_and_the_exception():
    entry = {"status": {"status_str": "error", "completed": False, "messages": [
        ["execution_start", {"prompt_id": "p"}],
        ["execution_error", {"prompt_id": "p", "node_id": "8", "node_type": "ALCM_KSampler",
                             "exception_type": "/x/custom_nodes/pack.samplers.SamplerError",
                             "exception_message": "out of memory\n"}]]}}
    assert execution_error_text(entry) == "node 8 (ALCM_KSampler) raised SamplerError: out of memory"

def test_output_files_are_every_saved_file_whatever_the_node_or_key():
    entry = {"outputs": {
        "11": {"images": [{"filename": "v_00001_.mp4", "subfolder": "AnimateLCM", "type": "output"}],
               "animated": [True]},
        "12": {"gifs": [{"filename": "g.gif", "subfolder": "", "type": "output", "format": "image/gif"}]},
        "13": {"images": [{"filename": "preview.png", "subfolder": "", "type": "temp"}]},
        "14": {"text": ["hello"]}}}
    assert output_files(entry) == [
        {"filename": "v_00001_.mp4", "subfolder": "AnimateLCM", "type": "output"},
        {"filename": "g.gif", "subfolder": "", "type": "output"}]

def test_downloads_keep_the_subfolder_stay_inside_the_folder_and_never_overwrite(tmp_path):
    assert local_path(tmp_path, "AnimateLCM", "v.mp4") == tmp_path / "AnimateLCM" / "v.mp4"
    assert local_path(tmp_path, "../../etc", "/x/../passwd") == tmp_path / "etc" / "passwd"
    (tmp_path / "v.mp4").write_bytes(b"old")
    (tmp_path / "v_1.mp4").write_bytes(b"old")
    assert local_path(tmp_path, "", "v.mp4") == tmp_path / "v_2.mp4"

def test_server_urls():
    assert server_urls("http://127.0.0.1:8188/") == ("http://127.0.0.1:8188", "ws://127.0.0.1:8188/ws")
    assert server_urls("gpu-box:8188") == ("http://gpu-box:8188", "ws://gpu-box:8188/ws")
    assert server_urls("https://host/comfy") == ("https://host/comfy", "wss://host/comfy/ws")
    with pytest.raises(UsageError):
        server_urls("ftp://host")
