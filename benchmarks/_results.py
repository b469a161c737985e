"""Shared by the benchmarks and the reproductions: each script owns a results page (`benchmarks/<name>.md`,
`reproductions/<name>.md`) and its sections, between `<!-- name:start -->` / `<!-- name:end -->`.
`benchmarks/RESULTS.md` is the hand-kept index of those pages."""

import os
import platform
from pathlib import Path


BENCHMARKS = Path(__file__).resolve().parent


def hardware(device: str) -> str:
    """The machine line of a results page: the GPU's name, or the CPU core count (shared with other jobs here)."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"one {torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    return (f"{os.cpu_count()} CPU cores (torch {torch.__version__}, {platform.processor() or platform.machine()}), "
            "shared with other jobs")


def write_section(page: Path, name: str, body: str) -> None:
    """Replaces the section `name` of the results page `page` with `body` (appends it if absent, creates the page if
    needed); the page's other sections and the text outside the markers are kept."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body}\n{end}"
    page = Path(page)
    text = page.read_text(encoding="utf-8") if page.exists() else f"# {page.stem.replace('_', ' ').capitalize()}\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    page.write_text(text, encoding="utf-8")
