"""The tiny model cache: built once per inputs, atomically, safetensors only."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from repo_ray.config import ModelConfig
from repo_ray.model import FORMAT_VERSION, build_tiny_policy, ensure_tiny_models, load_policy, load_tokenizer

from .conftest import CORPUS_KEY, SEED, TINY

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl")


def _weight_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)]


class CountingCorpus:
    def __init__(self, texts):
        self.texts, self.calls = texts, 0

    def __call__(self):
        self.calls += 1
        return iter(self.texts)


def test_second_call_is_a_hit_that_never_reads_the_corpus(tmp_path, corpus):
    cfg = ModelConfig(cache_dir=str(tmp_path), tiny=TINY)
    source = CountingCorpus(corpus)
    first = ensure_tiny_models(cfg, source, CORPUS_KEY, SEED)
    assert source.calls == 1
    second = ensure_tiny_models(cfg, source, CORPUS_KEY, SEED)
    assert source.calls == 1
    assert second == first
    assert first.tokenizer_dir.parent == first.policy_dir.parent == first.reward_dir.parent
    assert first.policy_dir.parent.parent == tmp_path.resolve()


def test_manifest_records_what_was_built(tiny_paths, corpus):
    manifest = json.loads((tiny_paths.policy_dir.parent / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["tiny"] == TINY.model_dump(mode="json")
    assert (manifest["corpus_key"], manifest["seed"], manifest["corpus_texts"]) == (CORPUS_KEY, SEED, len(corpus))
    assert manifest["vocab_size"] == len(load_tokenizer(tiny_paths.tokenizer_dir))
    assert set(manifest["versions"]) == {"torch", "transformers", "tokenizers"}


def test_cached_policy_is_the_seeded_build(tiny_paths, tokenizer, policy):
    built = build_tiny_policy(TINY, tokenizer, SEED).state_dict()
    loaded = policy.state_dict()
    assert built.keys() == loaded.keys()
    assert all(torch.equal(built[k], loaded[k]) for k in built)


def test_other_inputs_get_other_entries(tmp_path, corpus):
    cfg = ModelConfig(cache_dir=str(tmp_path), tiny=TINY)
    base = ensure_tiny_models(cfg, lambda: corpus, CORPUS_KEY, SEED)
    wider = ModelConfig(cache_dir=str(tmp_path), tiny=TINY.model_copy(update={"hidden_size": 96}))
    others = [
        ensure_tiny_models(wider, lambda: corpus, CORPUS_KEY, SEED),
        ensure_tiny_models(cfg, lambda: corpus, "another-corpus", SEED),
        ensure_tiny_models(cfg, lambda: corpus, CORPUS_KEY, SEED + 1),
    ]
    entries = {p.policy_dir.parent for p in [base, *others]}
    assert len(entries) == 4
    assert load_policy(others[0].policy_dir).config.hidden_size == 96


def test_corpus_is_capped_by_tokenizer_corpus_limit(tmp_path, corpus):
    cfg = ModelConfig(cache_dir=str(tmp_path), tiny=TINY.model_copy(update={"tokenizer_corpus_limit": 120}))
    paths = ensure_tiny_models(cfg, lambda: iter(corpus * 10), CORPUS_KEY, SEED)
    assert json.loads((paths.policy_dir.parent / "manifest.json").read_text())["corpus_texts"] == 120


def test_race_loser_discards_its_copy_and_uses_the_winners(tmp_path, corpus):
    cfg = ModelConfig(cache_dir=str(tmp_path), tiny=TINY)
    winner = {}

    def corpus_that_loses_the_race():
        # While this build runs, another "process" completes the same entry first.
        winner["paths"] = ensure_tiny_models(cfg, lambda: corpus[:150], CORPUS_KEY, SEED)
        return iter(corpus)

    paths = ensure_tiny_models(cfg, corpus_that_loses_the_race, CORPUS_KEY, SEED)
    assert paths == winner["paths"]
    manifest = json.loads((paths.policy_dir.parent / "manifest.json").read_text())
    assert manifest["corpus_texts"] == 150  # the winner's entry survived untouched
    assert [p.name for p in tmp_path.iterdir()] == [paths.policy_dir.parent.name]  # no temp dir left


def test_a_dir_without_manifest_is_rebuilt(tmp_path, corpus):
    cfg = ModelConfig(cache_dir=str(tmp_path), tiny=TINY)
    paths = ensure_tiny_models(cfg, lambda: corpus, CORPUS_KEY, SEED)
    (paths.policy_dir.parent / "manifest.json").unlink()
    (paths.policy_dir / "model.safetensors").unlink()
    again = ensure_tiny_models(cfg, lambda: corpus, CORPUS_KEY, SEED)
    assert again == paths and (again.policy_dir / "model.safetensors").is_file()


def test_only_safetensors_weights_and_self_contained_model_dirs(tiny_paths):
    weights = _weight_files(tiny_paths.policy_dir.parent)
    assert sorted(p.relative_to(tiny_paths.policy_dir.parent).as_posix() for p in weights) == [
        "policy/model.safetensors",
        "reward/model.safetensors",
    ]
    expected = load_tokenizer(tiny_paths.tokenizer_dir).encode("豪华大床房")
    for model_dir in (tiny_paths.policy_dir, tiny_paths.reward_dir):
        assert load_tokenizer(model_dir).encode("豪华大床房") == expected


def test_build_model_and_train_share_one_cache_entry(tmp_path, data_dir, monkeypatch):
    """`repo-ray build-model` then `repo-ray train`'s model stage on the same data: the second
    reuses the first's entry (both key the cache on the data files' content), also after the
    data directory is copied elsewhere."""
    import shutil

    import yaml

    from repo_ray import cli
    from repo_ray.config import load_config
    from repo_ray.model import cache
    from repo_ray.pipeline.rundir import RunDir
    from repo_ray.pipeline.train import stage_base

    builds = []
    real_build = cache._build_entry
    monkeypatch.setattr(cache, "_build_entry", lambda out, *a: (builds.append(out), real_build(out, *a)))
    small = TINY.model_copy(update={"tokenizer_corpus_limit": 400, "pretrain_steps": 0})
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({"model": {"cache_dir": str(tmp_path / "cache"), "dtype": "float32",
                                                "tiny": small.model_dump(mode="json")}}))
    assert cli.main(["build-model", "--config", str(config), "--data", str(data_dir)]) == 0
    assert len(builds) == 1
    copied = shutil.copytree(data_dir, tmp_path / "data-copy")
    base, _ = stage_base(load_config(config), RunDir(str(tmp_path / "run")), copied)
    assert len(builds) == 1  # reused, not rebuilt
    entries = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    assert entries == [base.policy.parent] and (base.policy / "config.json").is_file()
