"""A baseline revision in a git worktree, measured beside this checkout ("before" and "after").

``python -m bench --baseline REV`` checks REV out with ``git worktree add --detach`` under the
run's temporary folder and removes the worktree when the run ends, however it ends. The
baseline runs with this checkout's virtualenv and against the run's one emulator; its app code
comes from the worktree only. gunicorn serves the worktree's own ``bench.this_app:create_app()``
from inside the worktree, with the worktree as PYTHONPATH, and ``imports_of_served_app`` checks
that doing so imports nothing from this checkout before anything is measured.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.servers import ROOT

GIT_TIMEOUT = 60.0
SERVED = "bench.this_app"  # the module gunicorn imports (bench/servers.py APPS)
# Run inside the worktree: import the served module, list where every module came from.
IMPORT_CHECK = (
    "import importlib, json, sys\n"
    f"module = importlib.import_module({SERVED!r})\n"
    "print(json.dumps({'create_app': callable(getattr(module, 'create_app', None)),\n"
    "                  'files': {name: getattr(m, '__file__', None)\n"
    "                            for name, m in list(sys.modules.items())}}))\n"
)


class BaselineError(RuntimeError):
    """The baseline cannot be checked out or served as it is."""


@dataclass(frozen=True)
class Baseline:
    """The baseline revision as asked for, the commit it named, and where it is checked out."""

    revision: str
    commit: str
    subject: str
    tree: Path

    def describe(self) -> dict:
        """What the results record about it."""
        return {**asdict(self), "tree": str(self.tree)}


def git(*args: str, cwd: Path = ROOT) -> str:
    """Run git in this checkout; its output, stripped."""
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,  # noqa: S603, S607
                          timeout=GIT_TIMEOUT)
    if done.returncode != 0:
        raise BaselineError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def in_git_checkout() -> bool:
    """Whether this checkout is a git repository with at least one commit."""
    try:
        git("rev-parse", "--verify", "--quiet", "HEAD")
    except (BaselineError, OSError, subprocess.SubprocessError):
        return False
    return True


@contextmanager
def worktree(revision: str, work_dir: Path) -> Iterator[Baseline]:
    """The baseline checked out under ``work_dir``, removed afterwards (even on failure)."""
    commit = git("rev-parse", "--verify", "--end-of-options", f"{revision}^{{commit}}")
    tree = work_dir / "baseline"
    try:
        git("worktree", "add", "--detach", str(tree), commit)
        baseline = Baseline(revision, commit, git("show", "-s", "--format=%s", commit), tree)
        check_served_app(baseline)
        yield baseline
    finally:
        remove(tree)


def remove(tree: Path) -> None:
    """Remove the worktree and git's record of it; warn, never raise, when that fails."""
    try:
        git("worktree", "remove", "--force", str(tree))
    except (BaselineError, OSError, subprocess.SubprocessError):
        shutil.rmtree(tree, ignore_errors=True)  # e.g. ``worktree add`` stopped half-way
        try:
            git("worktree", "prune")
        except (BaselineError, OSError, subprocess.SubprocessError) as error:
            print(f"[bench] could not remove the baseline worktree {tree}: {error}",
                  file=sys.stderr)


def environment(tree: Path) -> dict[str, str]:
    """What a process serving the tree's app gets: the tree, and only it, on its import path."""
    return {"PYTHONPATH": str(tree)}


def check_served_app(baseline: Baseline) -> None:
    """Fail unless the tree has ``bench.this_app:create_app`` and serving it imports nothing
    from this checkout (only from the tree and the virtualenv)."""
    if not (baseline.tree / "bench" / "this_app.py").is_file():
        raise BaselineError(f"{baseline.revision} has no bench/this_app.py to serve; choose a "
                            "revision from after the benchmark suite was added")
    files = imports_of_served_app(baseline.tree)
    if not files["create_app"]:
        raise BaselineError(f"{baseline.revision}'s {SERVED} has no create_app()")
    leaked = sorted(name for name, path in files["files"].items()
                    if path and Path(path).is_relative_to(ROOT)
                    and not Path(path).is_relative_to(sys.prefix))
    if leaked:
        raise BaselineError(f"serving {baseline.revision} imported from {ROOT}: {leaked}")
    app_file = files["files"].get("app")
    if not app_file or not Path(app_file).is_relative_to(baseline.tree):
        raise BaselineError(f"serving {baseline.revision} imported app from {app_file}")


def imports_of_served_app(tree: Path) -> dict:
    """Import the served module as gunicorn would (in the tree, the tree as PYTHONPATH)."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", IMPORT_CHECK], cwd=tree,  # noqa: S603
                          env={**env, **environment(tree)}, capture_output=True, text=True,
                          timeout=GIT_TIMEOUT)
    if done.returncode != 0:
        raise BaselineError(f"importing {SERVED} in {tree} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)
