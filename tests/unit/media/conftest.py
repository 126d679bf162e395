"""The video fixture (real nuclei crops moved synthetically over a real background), built
once per test session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from exemplar.data.video_fixture import VideoFixture, build_video_fixture
from exemplar.media.video import iter_frames


@pytest.fixture(scope="session")
def nuclei_video(tmp_path_factory: pytest.TempPathFactory) -> VideoFixture:
    return build_video_fixture(tmp_path_factory.mktemp("video") / "nuclei.mp4")


@pytest.fixture(scope="session")
def nuclei_frames(nuclei_video: VideoFixture) -> list[np.ndarray]:
    return [rgb for _, _, rgb in iter_frames(Path(nuclei_video.path))]
