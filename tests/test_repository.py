"""What the repository must never contain: it is cloned onto fresh machines."""
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def tracked_files():
    listing = subprocess.run(["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [line.split(maxsplit=3) for line in listing.splitlines()]


def test_no_virtualenv_and_no_symlink_is_committed():
    """A committed symlink to a virtualenv replaced the real one wherever main was
    checked out; nothing in the repository is a symlink."""
    entries = tracked_files()
    assert not [path for mode, _, _, path in entries if mode == "120000"]
    assert not [path for *_, path in entries if path.split("/")[0] in {".venv", "venv", "var", "staticfiles"}
                and path != "var/.gitkeep"]
