"""A run directory: a local absolute path or a pyarrow.fs URI (e.g. s3://bucket/run).

Stages write their outputs under it and a `stage.json` with the hash of their inputs;
an output is reused only when that hash matches (`RunDir.stage`: key, reuse, time, sync,
mark and print of every stage in one place). Every run writes `manifest.json` (git
SHA, config, package versions). Models are loaded from local disk, so a remote run
directory is mirrored into a local scratch copy for the stages that need files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from repo_ray.errors import UserError
from repo_ray.hashing import content_hash

PACKAGES = ("repo-ray", "torch", "ray", "transformers", "peft", "deepspeed", "pyarrow", "vllm")


class RunDirError(UserError, ValueError):
    """The run directory cannot be used."""


def say(msg: str) -> None:
    """A progress line of the driver (stdout, flushed: a Ray job's log shows it at once)."""
    print(f"[repo-ray] {msg}", flush=True)


def in_ray_job() -> bool:
    return bool(os.environ.get("RAY_JOB_SUBMISSION_ID") or os.environ.get("RAY_JOB_ID"))


def resolve_run_dir(value: str) -> str:
    """Absolute path or URI. A relative path is made absolute when run by hand; inside a
    Ray job it is refused: the job's working dir is a temporary copy and would be lost."""
    if "://" in value:
        return value
    p = Path(value).expanduser()
    if not p.is_absolute():
        if in_ray_job():
            raise RunDirError(
                f"--run-dir {value!r} is relative; inside a Ray job give an absolute path on shared storage or a URI"
            )
        p = p.resolve()
    return str(p)


@dataclass
class RunDir:
    uri: str

    def __post_init__(self) -> None:
        self.uri = resolve_run_dir(self.uri)
        try:
            self.fs, self.root = pafs.FileSystem.from_uri(self.uri)
        except Exception as err:  # pyarrow raises several types for unsupported schemes
            raise RunDirError(f"--run-dir {self.uri}: {err}") from None
        self.is_local = isinstance(self.fs, pafs.LocalFileSystem)
        if self.fs.get_file_info(self.root).type == pafs.FileType.File:
            raise RunDirError(f"--run-dir {self.uri}: is a file, not a directory")
        try:
            self.fs.create_dir(self.root, recursive=True)
        except OSError as err:  # a parent is a file, no permission, read-only storage
            raise RunDirError(f"--run-dir {self.uri}: cannot create it ({str(err).splitlines()[0]})") from None

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def local(self, *parts: str) -> Path:
        """A local directory for files models read; for a remote run dir a scratch mirror."""
        if self.is_local:
            p = Path(self.path(*parts))
        else:
            scratch = Path(os.environ.get("REPO_RAY_SCRATCH", "/tmp/repo-ray-scratch"))
            p = scratch / self.uri.replace("://", "_").replace("/", "_") / Path(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p

    def exists(self, *parts: str) -> bool:
        return self.fs.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound

    def _tmp(self, *parts: str) -> str:
        """A hidden sibling no reader globs for: files appear whole or not at all (rename)."""
        return self.path(*parts[:-1], f".{parts[-1]}.tmp-{os.getpid()}")

    def _discard(self, tmp: str) -> None:
        try:
            self.fs.delete_file(tmp)
        except (OSError, FileNotFoundError):
            pass

    def write_json(self, data: Any, *parts: str) -> None:
        self.fs.create_dir(self.path(*parts[:-1]), recursive=True)
        text = json.dumps(data, indent=2, sort_keys=True, default=str).encode()  # fails before any file exists
        tmp = self._tmp(*parts)
        try:
            with self.fs.open_output_stream(tmp) as f:
                f.write(text)
            self.fs.move(tmp, self.path(*parts))
        except BaseException:
            self._discard(tmp)
            raise

    def read_json(self, *parts: str) -> Any:
        with self.fs.open_input_stream(self.path(*parts)) as f:
            return json.loads(f.read().decode())

    def write_parquet(self, table, *parts: str) -> None:
        self.fs.create_dir(self.path(*parts[:-1]), recursive=True)
        tmp = self._tmp(*parts)
        try:
            pq.write_table(table, tmp, filesystem=self.fs)
            self.fs.move(tmp, self.path(*parts))
        except BaseException:
            self._discard(tmp)
            raise

    def read_parquet_dir(self, *parts: str):
        """All Parquet parts under a directory as one table (None when there are none)."""
        import pyarrow as pa

        if not self.exists(*parts):
            return None
        infos = self.fs.get_file_info(pafs.FileSelector(self.path(*parts)))
        files = sorted(i.path for i in infos if i.path.endswith(".parquet"))
        if not files:
            return None
        return pa.concat_tables([pq.read_table(f, filesystem=self.fs) for f in files])

    def delete(self, *parts: str) -> None:
        info = self.fs.get_file_info(self.path(*parts))
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(self.path(*parts))
        elif info.type == pafs.FileType.File:
            self.fs.delete_file(self.path(*parts))

    def sync_up(self, local_dir: Path, *parts: str) -> None:
        """Copy a local scratch directory to the run dir (no-op for a local run dir)."""
        if not self.is_local:
            pafs.copy_files(str(local_dir), self.path(*parts), source_filesystem=pafs.LocalFileSystem(),
                            destination_filesystem=self.fs)

    # ------------------------------------------------------------------ stages
    def stage_done(self, stage: str, input_hash: str) -> bool:
        """True when the stage finished before with the same inputs."""
        if not self.exists(stage, "stage.json"):
            return False
        return self.read_json(stage, "stage.json").get("input_hash") == input_hash

    def mark_stage(self, stage: str, input_hash: str, **info: Any) -> None:
        self.write_json({"input_hash": input_hash, "finished_at": time.time(), **info}, stage, "stage.json")

    def stage(self, name: str, *inputs: Any, label: str | None = None, output: tuple[str, ...] = ()) -> Stage:
        """A stage keyed by the content hash of its name and `inputs`; `output` is the part of
        the run dir it writes (synced up from the local copy when it finishes)."""
        return Stage(self, name, content_hash(name, *inputs), label or name, output)

    def write_manifest(self, config: dict[str, Any]) -> None:
        self.write_json(
            {"git_sha": git_sha(), "config": config, "packages": package_versions(), "python": sys.version,
             "argv": sys.argv, "started_at": time.time()},
            "manifest.json",
        )


@dataclass
class Stage:
    """One reusable stage of a run. `reused(...)` says whether it finished before with the same
    key (and prints so); otherwise the caller does the work and calls `finish(...)`, which
    syncs the output up, writes RUN/<name>/stage.json (key, seconds, info) and prints."""

    rd: RunDir
    name: str
    key: str
    label: str
    output: tuple[str, ...] = ()
    started: float = field(default_factory=time.perf_counter)

    def reused(self, where: object, ready: bool = True) -> bool:
        """True when the stage is done with this key and `ready` (its output is present)."""
        if ready and self.rd.stage_done(self.name, self.key):
            say(f"{self.label}: reusing {where}")
            return True
        self.started = time.perf_counter()
        return False

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def finish(self, message: str, where: object = None, **info: Any) -> float:
        """Sync, mark and print; returns the stage's seconds."""
        seconds = self.seconds
        if self.output:
            self.rd.sync_up(self.rd.local(*self.output), *self.output)
        self.rd.mark_stage(self.name, self.key, seconds=round(seconds, 1), **info)
        say(f"{self.label}: {message} ({seconds:.1f}s)" + (f" -> {where}" if where is not None else ""))
        return seconds


def git_sha() -> str | None:
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True,
                               timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
