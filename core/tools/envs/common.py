"""What the environment recipes share: logged steps that stop the recipe on the first failure."""
from __future__ import annotations

import subprocess
import sys


class Steps:
    """Prints each step under a tag and stops the recipe with that tag when a command fails."""

    def __init__(self, tag: str):
        self.tag = tag

    def say(self, message: str) -> None:
        print(f"[{self.tag}] {message}", flush=True)

    def run(self, cmd: list[str], *, capture: bool = False) -> str:
        self.say("+ " + " ".join("'<probe>'" if "\n" in c else c for c in cmd))
        done = subprocess.run(cmd, check=False, text=True, stdout=subprocess.PIPE if capture else None)
        if done.returncode != 0:
            sys.exit(f"[{self.tag}] failed ({done.returncode}): {' '.join(cmd)}")
        return done.stdout or ""
