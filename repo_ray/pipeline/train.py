"""`repo-ray train`: the whole run, top to bottom, as the entrypoint of a Ray job.

Stages: data -> tokenizer/tiny model (when no model path is given) -> SFT (merged into
RUN/sft/model) -> reward model -> RL (repo, ppo or grpo) -> evaluation and report. A
stage's output is reused only when the hash of its inputs matches (RunDir.stage). The run
log and checkpoints of the RL stage are written by runlog.py.
The placement of every actor of the run (who runs where, how many) reads in placement.py.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repo_ray.config import RepoRayConfig
from repo_ray.eval.stepstats import COLUMNS
from repo_ray.hashing import content_hash
from repo_ray.pipeline.ledger import Ledger
from repo_ray.pipeline.loop import LoopState, RLLoop
from repo_ray.pipeline.ray_setup import init_ray, run_scoped_name
from repo_ray.pipeline.rundir import RunDir, in_ray_job, say
from repo_ray.pipeline.runlog import checkpoint, checkpoint_state, clear, flush, read_steps, restore

log = logging.getLogger(__name__)


@dataclass
class BaseModel:
    tokenizer: Path
    policy: Path


# ---------------------------------------------------------------------------- stages
def stage_data(cfg: RepoRayConfig, rd: RunDir) -> tuple[Path, str]:
    from repo_ray.domain.datagen import write_dataset

    if cfg.data.dir is not None:
        return Path(cfg.data.dir), content_hash("external", cfg.data.dir)
    stage = rd.stage("data", cfg.data.model_dump(mode="json"), output=("data",))
    out = rd.local("data")
    if not stage.reused(out):
        write_dataset(cfg.data, out)
        stage.finish("generated", out)
    return out, stage.key


def stage_base(cfg: RepoRayConfig, rd: RunDir, data_dir: Path) -> tuple[BaseModel, str]:
    """The configured model, or the tiny models built from the data's texts: the cache is
    keyed on those files' content, as `repo-ray build-model` keys it, so neither rebuilds
    what the other built."""
    from repo_ray.model.cache import ensure_tiny_models_for_data

    if cfg.model.path is not None:
        return (BaseModel(Path(cfg.model.tokenizer_path or cfg.model.path), Path(cfg.model.path)),
                content_hash(cfg.model.path))
    model_cfg = cfg.model
    cache = Path(model_cfg.cache_dir).expanduser()
    if not cache.is_absolute():  # a Ray job's working dir is a temporary copy: cache in the run dir then
        cache = rd.local(".model-cache") if in_ray_job() else cache.resolve()
    paths = ensure_tiny_models_for_data(model_cfg.model_copy(update={"cache_dir": str(cache)}), data_dir, cfg.seed)
    say(f"tiny models: {paths.policy_dir.parent}")
    return BaseModel(paths.tokenizer_dir, paths.policy_dir), content_hash(str(paths.policy_dir))


def optimizer_key(cfg: RepoRayConfig, own_lr: float | None) -> dict[str, Any]:
    """learner.optimizer as a stage-key part of a stage with its own learning rate (SFT, DPO):
    without `lr` when `own_lr` is set, so changing the RL learning rate reuses SFT and DPO."""
    return cfg.learner.optimizer.model_dump(mode="json", exclude={"lr"} if own_lr else None)


def stage_sft(cfg: RepoRayConfig, rd: RunDir, data_dir: Path, data_key: str, base: BaseModel,
              base_key: str) -> tuple[Path, str]:
    """SFT with LoRA on the original base, merged into RUN/sft/model (the base of all RL)."""
    from repo_ray.domain.schemas import load_rows
    from repo_ray.model import merge_adapter
    from repo_ray.model.adapters import write_adapter_dir
    from repo_ray.pipeline.placement import start_learner_group

    stage = rd.stage("sft", base_key, data_key, cfg.learner.sft.model_dump(mode="json"),
                     cfg.learner.lora.model_dump(mode="json"), optimizer_key(cfg, cfg.learner.sft.lr),
                     cfg.learner.batch_size, cfg.learner.micro_batch_size, cfg.seed, output=("sft",))
    out = rd.local("sft", "model")
    if stage.reused(out, (out / "config.json").is_file()):
        return out, stage.key
    dialogues = load_rows("sft", data_dir).rows
    group = start_learner_group(cfg, base.policy, base.tokenizer, mode="sft", name=f"sft-{stage.key[:8]}")
    try:
        steps = group.sft(dialogues)
        update = group.publish_adapter(0, [0, 1, 2])
    finally:
        group.shutdown()
    adapter_dir = write_adapter_dir(update, rd.local("sft", "adapter"))
    merge_adapter(base.policy, adapter_dir, out)
    losses = [s.loss for s in steps]
    stage.finish(f"{len(steps)} steps, loss {losses[0]:.3f} -> {losses[-1]:.3f}", out, first_loss=losses[0],
                 last_loss=losses[-1], optimizer_steps=len(steps))
    return out, stage.key


def stage_rm(cfg: RepoRayConfig, rd: RunDir, data_dir: Path, data_key: str, sft_model: Path,
             sft_key: str) -> tuple[Path, str]:
    from repo_ray.domain.schemas import load_rows
    from reward_actors.rm.train import train_reward_model

    stage = rd.stage("rm", sft_key, data_key, cfg.reward.model.model_dump(mode="json"), cfg.seed,
                     label="reward model", output=("rm",))
    out = rd.local("rm", "model")
    if stage.reused(out):
        return out, stage.key
    pairs = load_rows("preference", data_dir).rows
    res = train_reward_model(cfg, pairs, sft_model, out)
    acc = res.held_out.overall.accuracy if res.held_out is not None else float("nan")
    stage.finish(f"held-out pairwise accuracy {acc:.3f}", out, held_out_accuracy=acc)
    return out, stage.key


# ---------------------------------------------------------------------------- RL
def probe_tokens(tokenizer_path: Path, scenario) -> list[int]:
    from repo_ray.domain.scenario import render_system_prompt
    from repo_ray.model import load_tokenizer
    from repo_ray.model.chat import encode_prompt
    from repo_ray.types import Message, Role

    tok = load_tokenizer(tokenizer_path)
    return encode_prompt(tok, [Message(Role.SYSTEM, render_system_prompt(scenario))])[:32]


@dataclass
class RLRun:
    steps: list[dict[str, Any]]
    final_adapter_dir: Path | None
    ledger_counts: dict[str, int]


@dataclass
class RewardSide:
    """The reward actors every RL run of one reward model can share: the RM scorer and, when
    the judge is a source, the judge pool (+ the local judge server). RewardPool and rule
    checkers stay per run, since `reward.sources` and weights may differ."""

    rm: Any
    judge_pool: Any | None
    servers: list[Any]

    def close(self) -> None:
        import ray

        if self.judge_pool is not None:
            try:
                ray.get(self.judge_pool.limiter.forget_spend.remote(), timeout=10)
            except Exception:  # noqa: BLE001 - a dead limiter has nothing to forget
                pass
            self.judge_pool.shutdown()
        try:
            ray.kill(self.rm)
        except Exception:  # already gone
            pass
        for srv in self.servers:
            srv.stop()


def start_reward_side(cfg: RepoRayConfig, rm_dir: Path, run_id: str, judge: bool | None = None) -> RewardSide:
    """RM scorer and (when `judge`, default: the judge is in reward.sources) the judge pool."""
    from repo_ray.pipeline.placement import start_rm_scorer

    side = RewardSide(start_rm_scorer(cfg, rm_dir, run_id=run_id), None, [])
    try:
        if "judge" in cfg.reward.sources if judge is None else judge:
            judge_cfg = cfg.judge
            if judge_cfg.local_server.enabled:
                from reward_actors.judge.server import JudgeServerOptions, JudgeServerProcess

                srv = JudgeServerProcess.start(JudgeServerOptions.from_config(judge_cfg.local_server, seed=cfg.seed,
                                                                               model=judge_cfg.model,
                                                                               extra_items=judge_cfg.extra_items))
                side.servers.append(srv)
                judge_cfg = judge_cfg.model_copy(update={"base_url": srv.base_url})
                say(f"local judge server: {srv.base_url}")
            from repo_ray.pipeline.placement import deploy_judge_pool

            side.judge_pool = deploy_judge_pool(judge_cfg, cfg.reward.judge_weights, run_id,
                                                max(1.0, cfg.reward.timeouts.judge_s - 1.0))
    except BaseException:
        side.close()
        raise
    return side


def run_rl(cfg: RepoRayConfig, rd: RunDir, run_id: str, data_dir: Path, sft_model: Path, rm_dir: Path,
           resume: bool, progress: bool = True, on_step=None, reward_side: RewardSide | None = None) -> RLRun:
    """Start the run's actors, run the loop, checkpoint every pipeline.checkpoint_every steps.
    `reward_side` (RM scorer + judge pool) is started here unless a caller shares its own."""
    import ray

    from repo_ray.domain.schemas import load_rows
    from repo_ray.model.adapters import write_adapter_dir
    from repo_ray.pipeline.adapter_push import push_adapter
    from repo_ray.pipeline.placement import start_learner_group, start_reward_pool, start_rollout_fleet

    scenarios = load_rows("rl", data_dir).rows
    tokenizer = sft_model  # merge_adapter copies the tokenizer next to the merged model
    probe = probe_tokens(tokenizer, scenarios[0])
    own_side = reward_side is None
    actors: list[Any] = []
    learner = None
    loop = None
    try:
        # --- reward side: RM scorer, judge pool (+ local judge server), rule checkers, pool
        if own_side:
            reward_side = start_reward_side(cfg, rm_dir, run_id)
        if "judge" in cfg.reward.sources and reward_side.judge_pool is None:
            raise ValueError("reward.sources has the judge but the shared reward side has no judge pool")
        judge_pool = reward_side.judge_pool if "judge" in cfg.reward.sources else None
        pool, checkers = start_reward_pool(cfg, reward_side.rm, judge_pool.handle if judge_pool else None)
        actors += [pool, *checkers]
        # --- rollout fleet (+ the frozen-policy control) and the learner group
        workers, control = start_rollout_fleet(cfg, sft_model, tokenizer, run_id)
        actors += [*workers.values(), *([control] if control is not None else [])]
        learner = start_learner_group(cfg, sft_model, tokenizer, name=run_scoped_name("learner", run_id))
        limiter = judge_pool.limiter if judge_pool is not None else None

        state, ledger, update = LoopState(), Ledger(), None
        if resume:
            state, ledger = restore(rd, learner, limiter)
            if state.step > 0:
                update = learner.publish_adapter(state.step, probe)
                push_adapter(update, workers, cfg.rollout.adapter_logprob_tolerance)
            say(f"resumed at step {state.step} (episode cursor {state.cursor})")
        else:
            clear(rd)

        loop = RLLoop(cfg, rd, workers, control, pool, learner, scenarios, probe, state, ledger, progress=progress)
        loop.last_update = update
        every = cfg.pipeline.checkpoint_every

        def rebuild_learner():
            """A learner rank died: a new group, loaded from the last checkpoint (placement.py)."""
            nonlocal learner
            learner.shutdown()
            learner = start_learner_group(cfg, sft_model, tokenizer, name=run_scoped_name("learner", run_id))
            if rd.exists("rl", "checkpoints", "latest.json"):
                learner.load_checkpoint(rd.local("rl", "checkpoints", rd.read_json("rl", "checkpoints",
                                                                                   "latest.json")["latest"]))
            return learner

        loop.rebuild_learner = rebuild_learner
        loop.rollback_store = lambda step: checkpoint_state(rd, step)
        watch = _actor_watch(run_id, judge_pool)
        checkpoint_s: list[float] = []
        from repo_ray.pipeline.hacking_watch import HackingWatch

        hacking = HackingWatch(cfg, read_steps(rd) if resume else ())  # earlier steps of a resumed run count

        def after_step(lp: RLLoop, record) -> None:
            step = record.step
            hacking.observe(lp, record)  # before the flush below: the row carries its monitor columns
            for kind, n in (watch.poll() if watch is not None else {}).items():
                lp._event("restart", kind, f"{n} restart(s) seen by Ray's state API")
            if step >= lp.steps_total():
                lp.drain("run end")
                checkpoint_s.append(checkpoint(rd, lp, lp.learner, limiter))
            elif step % every == 0:  # no drain: pending chunks are dispatched again on restore (loop.py)
                checkpoint_s.append(checkpoint(rd, lp, lp.learner, limiter))
            else:
                flush(rd, lp, step)
            if on_step is not None:
                on_step(lp, record)

        loop.run(on_step=after_step)
        if loop.state.step != loop.checkpointed_step or loop.rollouts or loop.rewards or loop.buffer:
            loop.drain("run end")  # the loop ended (data exhausted) mid-interval
            checkpoint_s.append(checkpoint(rd, loop, loop.learner, limiter))
        if checkpoint_s:
            say(f"checkpoints: {len(checkpoint_s)}, {sum(checkpoint_s) / len(checkpoint_s):.2f} s each on average")
        final = None
        if loop.state.step > 0:
            update = learner.publish_adapter(loop.state.step, probe)
            final = write_adapter_dir(update, rd.local("rl", "final_adapter"))
            rd.sync_up(rd.local("rl", "final_adapter"), "rl", "final_adapter")
        return RLRun(read_steps(rd), final, loop.ledger.counts())
    finally:
        if loop is not None:
            loop.close()
        if learner is not None:
            learner.shutdown()
        for a in actors:
            try:
                ray.kill(a)
            except Exception:  # already gone
                pass
        if own_side and reward_side is not None:
            reward_side.close()


def _actor_watch(run_id: str, judge_pool):
    """The per-step restart watch of the run's actors (faults.ActorWatch; None if unavailable)."""
    try:
        from repo_ray.pipeline.faults import ActorWatch

        return ActorWatch(run_id, judge_pool.app_name if judge_pool is not None else None)
    except Exception as err:  # noqa: BLE001 - the watch only adds report lines
        log.info("no actor watch: %s", type(err).__name__)
        return None


# ---------------------------------------------------------------------------- entrypoint
def run_id_for(cfg: RepoRayConfig, rd: RunDir) -> str:
    return f"{cfg.name}-{content_hash(rd.uri, length=8)}"


def train(cfg: RepoRayConfig, run_dir: str, resume: bool = False, progress: bool = True,
          evaluate: bool = True, on_step=None) -> dict[str, Any]:
    """Run every stage; returns a summary (also written to RUN/summary.json)."""
    started = time.perf_counter()
    rd = RunDir(run_dir)
    init_ray(cfg.pipeline.ray_address)
    rd.write_manifest(cfg.model_dump(mode="json"))
    run_id = run_id_for(cfg, rd)
    say(f"run {run_id} -> {rd.uri}")
    timings: dict[str, float] = {}

    def timed(name, fn, *args, **kw):
        t0 = time.perf_counter()
        out = fn(*args, **kw)
        timings[name] = round(time.perf_counter() - t0, 1)
        return out

    from repo_ray.trackers import open_trackers

    tracking = open_trackers(cfg, rd.local(), run_id)  # config.tracking; off: does nothing
    try:
        tracking.log_config(cfg.model_dump(mode="json"))

        def step_hook(lp, record) -> None:
            tracking.log_step(record.step, record.row.columns())  # the steps table's row
            if on_step is not None:
                on_step(lp, record)

        data_dir, data_key = timed("data", stage_data, cfg, rd)
        base, base_key = timed("model", stage_base, cfg, rd, data_dir)
        from repo_ray.model.context import fit_budgets_to_model
        from repo_ray.model.loading import max_positions

        # every later stage (SFT, RM, RL, eval) sees budgets the base model's positions can hold
        cfg, _ = fit_budgets_to_model(cfg, max_positions(base.policy, cfg.model.trust_remote_code))
        sft_model, sft_key = timed("sft", stage_sft, cfg, rd, data_dir, data_key, base, base_key)
        rm_dir, _ = timed("rm", stage_rm, cfg, rd, data_dir, data_key, sft_model, sft_key)
        rl = timed("rl", run_rl, cfg, rd, run_id, data_dir, sft_model, rm_dir, resume, progress, step_hook)
        summary: dict[str, Any] = {"run_id": run_id, "run_dir": rd.uri, "ledger": rl.ledger_counts,
                                   "sft_model": str(sft_model), "rm_dir": str(rm_dir), "data_dir": str(data_dir),
                                   "rl_steps": len(rl.steps), "timings_s": timings}
        if rl.steps:
            first, last = rl.steps[0], rl.steps[-1]
            summary["r_total_first_last"] = [first.get(COLUMNS.r_total_mean), last.get(COLUMNS.r_total_mean)]
        if evaluate:
            from repo_ray.pipeline.evaluation import evaluate_run

            summary["report"] = str(timed("eval", evaluate_run, cfg, rd, data_dir, base, sft_model, rl))
            if tracking and rd.exists("eval.json"):
                tracking.log_eval(rd.read_json("eval.json"))
    finally:
        tracking.close()
        if tracking and not rd.is_local:  # trackers write into the local mirror
            for sub in ("tensorboard", "wandb", "mlflow"):
                if (rd.local() / sub).is_dir():
                    rd.sync_up(rd.local() / sub, sub)
    summary["timings_s"] = timings
    summary["wall_s"] = round(time.perf_counter() - started, 1)
    rd.write_json(summary, "summary.json")
    return summary

