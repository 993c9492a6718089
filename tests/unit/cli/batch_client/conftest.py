"""The shipped text-to-video API workflow, fresh for each test that edits it."""

import json

import pytest

from animatelcm.devkit.workflows import WORKFLOWS

T2V = WORKFLOWS / "api" / "animatelcm_text_to_video.json"


@pytest.fixture
def t2v():
    return json.loads(T2V.read_text())
