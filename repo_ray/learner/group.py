"""The learner group: `learner.world_size` thin Ray actors in one placement group forming ONE
DeepSpeed job (ZeRO stage from config; gloo on CPU, nccl on GPU). Rank 0 publishes adapters.

Each rank receives the whole batch (one object-store ref) and trains on its stride of it
with the pure step functions of `trainers.py`; the driver combines the ranks' sums into
one typed metrics record. All DeepSpeed specifics (environment, initialize, ZeRO-aware
reads and writes of weights and optimizer state) live in `_DeepSpeedRank`.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from repo_ray.config import RepoRayConfig
from repo_ray.errors import UserError, remote_user_error
from repo_ray.heap import HeapTrimmer
from repo_ray.learner.trainers import (
    RL_ALGORITHMS,
    RLSettings,
    RLStepStats,
    StepMetrics,
    SupervisedMetrics,
    SupervisedStats,
    summarize_rl,
    summarize_supervised,
)
from repo_ray.telemetry import record
from repo_ray.types import AdapterUpdate, RewardResult, Trajectory

MODES = (*RL_ALGORITHMS, "sft", "dpo")
CHECKPOINT_FORMAT = 1
POLICY_DIR = "policy"  # a peft adapter directory (safetensors + adapter_config.json): merge_adapter / vLLM load it
VALUE_FILE = "value.safetensors"
OPTIMIZER_FILE = "optimizer_{model}.safetensors"
STATE_FILE = "learner_state.json"


class CheckpointError(UserError, ValueError):
    """A learner checkpoint cannot be loaded into this learner group (missing, other layout)."""


class PlacementError(UserError, RuntimeError):
    """The cluster cannot place the learner group's bundles."""


class LearnerRankDied(RuntimeError):
    """A rank of the group died: the collective job is broken and the group is ended. The RL
    loop rebuilds a group from the last checkpoint (pipeline/placement.py, "What survives what")."""


def _disable_shm_comm_build() -> None:
    """DeepSpeed's CPU TorchBackend JIT-compiles its `shm_comm` op (30-45 s per fresh venv,
    ENVIRONMENT.md) on first use; gloo carries the collectives without it. The one place
    that turns it off. `import deepspeed.comm.torch as m` would bind the *torch* package
    (deepspeed.comm re-exports `torch`), so the real module comes from importlib."""
    module = importlib.import_module("deepspeed.comm.torch")
    module.build_shm_op = lambda: None


class _DeepSpeedTrainable:
    """A DeepSpeed engine seen through trainers.Engine: `step()` returns the pre-clip global
    grad norm on accumulation boundaries (ZeRO 0 does not record one, so it is computed
    from the already all-reduced gradients)."""

    def __init__(self, engine, zero_stage: int):
        self.engine = engine
        self.module = engine.module
        self.zero_stage = zero_stage
        self.gradient_accumulation_steps = engine.gradient_accumulation_steps()

    def __call__(self, *args, **kwargs):
        return self.engine(*args, **kwargs)

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)

    def step(self) -> float | None:
        boundary = self.engine.is_gradient_accumulation_boundary()
        norm = None
        if boundary and self.zero_stage == 0:
            grads = [p.grad.detach().float().norm() for p in self.module.parameters() if p.grad is not None]
            norm = float(torch.stack(grads).norm()) if grads else 0.0
        self.engine.step()
        if boundary and norm is None:
            value = self.engine.get_global_grad_norm()
            norm = float(value) if value is not None else 0.0
        return norm if boundary else None

    def get_lr(self) -> list[float]:
        return list(self.engine.get_lr())


class _DeepSpeedRank:
    """One rank of the learner job. Thin: sets the process up as a DeepSpeed rank, holds the
    engines, and calls the pure step functions. Runs as a Ray actor (see LearnerGroup)."""

    def __init__(self, rank: int, world_size: int, cfg_json: str, base_model_path: str, tokenizer_path: str,
                 mode: str):
        self.rank, self.world_size, self.mode = rank, world_size, mode
        self.cfg = RepoRayConfig.model_validate_json(cfg_json)
        self.base_model_path, self.tokenizer_path = base_model_path, tokenizer_path
        self.policy = self.value = None
        self._trim = HeapTrimmer()  # after each RL step: RSS stays at the live set (repo_ray/heap.py)

    # ---------------------------------------------------------------- setup
    def node_ip(self) -> str:
        import ray

        return ray.util.get_node_ip_address()

    def free_port(self) -> int:
        with socket.socket() as s:
            s.bind(("", 0))
            return int(s.getsockname()[1])

    def new_store_path(self) -> str:
        """A fresh path for a file-based rendezvous store (ranks on this node only)."""
        self.store_dir = tempfile.mkdtemp(prefix="repo-ray-learner-")
        return os.path.join(self.store_dir, "store")

    def setup(self, master_addr: str, master_port: int, store_path: str | None = None) -> float:
        """Join the job and build the engines; returns the seconds deepspeed.initialize took
        (all engines of this rank). With `store_path` (all ranks on one node) the rendezvous
        is a file: torch's TCP store would listen on every interface, gloo itself binds
        MASTER_ADDR (127.0.0.1 locally)."""
        learner = self.cfg.learner
        gpu = learner.num_gpus_per_rank > 0 and torch.cuda.is_available()
        os.environ.update(
            RANK=str(self.rank), WORLD_SIZE=str(self.world_size), MASTER_ADDR=master_addr,
            MASTER_PORT=str(master_port),
            # Ray gives each GPU rank only its own device(s), so the local device index is 0.
            LOCAL_RANK="0" if gpu else str(self.rank),
        )
        if not gpu:
            os.environ["DS_ACCELERATOR"] = "cpu"
        backend = learner.dist_backend if learner.dist_backend != "auto" else ("nccl" if gpu else "gloo")
        import deepspeed

        _disable_shm_comm_build()
        from repo_ray.learner.models import build_policy, build_value_model
        from repo_ray.model.loading import load_tokenizer

        deepspeed.init_distributed(dist_backend=backend, dist_init_required=True,
                                   init_method=f"file://{store_path}" if store_path else None,
                                   rank=self.rank, world_size=self.world_size)
        device = f"cuda:{torch.cuda.current_device()}" if gpu else "cpu"
        self.tokenizer = load_tokenizer(self.tokenizer_path)
        dtype = self.cfg.model.dtype if gpu else "float32"  # bf16 matmuls on CPU are slow and inexact
        self.initialize_s = 0.0
        lr = learner.optimizer.lr
        if self.mode == "sft":
            lr = learner.sft.lr or lr
        elif self.mode == "dpo":
            lr = learner.dpo.lr or lr
        checkpointing = learner.gradient_checkpointing
        policy = build_policy(self.base_model_path, learner.lora, dtype, device, seed=self.cfg.seed,
                              gradient_checkpointing=checkpointing)
        self.policy = self._engine(deepspeed, policy, lr)
        if self.mode in ("repo", "ppo"):
            value = build_value_model(self.base_model_path, learner.lora, dtype, device, seed=self.cfg.seed,
                                      gradient_checkpointing=checkpointing)
            self.value = self._engine(deepspeed, value, learner.ppo.value_lr or learner.optimizer.lr)
        return self.initialize_s

    def _engine(self, deepspeed, module, lr: float) -> _DeepSpeedTrainable:
        from repo_ray.learner.models import trainable_parameters
        from repo_ray.learner.trainers import make_optimizer, make_scheduler

        learner = self.cfg.learner
        optimizer = make_optimizer(trainable_parameters(module), lr, learner.optimizer)
        scheduler = make_scheduler(optimizer, learner.optimizer.warmup_steps)
        config = {
            "train_micro_batch_size_per_gpu": learner.micro_batch_size,
            "gradient_accumulation_steps": learner.grad_accumulation_steps,
            "train_batch_size": learner.batch_size,
            "gradient_clipping": learner.optimizer.grad_clip,
            "zero_optimization": {"stage": learner.zero_stage},
            "steps_per_print": 10**9,
            "wall_clock_breakdown": False,
        }
        started = time.perf_counter()
        engine, _, _, _ = deepspeed.initialize(model=module, optimizer=optimizer, lr_scheduler=scheduler,
                                               config=config, dist_init_required=True)
        self.initialize_s += time.perf_counter() - started
        return _DeepSpeedTrainable(engine, learner.zero_stage)

    def _all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    # ---------------------------------------------------------------- training
    def train_rl(self, pairs: Sequence[tuple[Trajectory, RewardResult]]) -> tuple[RLStepStats, int]:
        from repo_ray.learner.batch import prepare_rl_batch
        from repo_ray.learner.trainers import rl_step
        from repo_ray.model.chat import padding_id

        learner = self.cfg.learner
        batch, selection = prepare_rl_batch(pairs, self.mode, learner.grpo.reward, padding_id(self.tokenizer))
        if batch is None:
            return RLStepStats(), len(selection.masked_ids)
        settings = RLSettings.from_config(learner, self.mode, self.cfg.rollout.temperature)
        stats = rl_step(self.policy, self.value, batch, settings, self.rank, self.world_size, self._all_reduce)
        self._trim()
        return stats, len(selection.masked_ids)

    def train_sft(self, dialogues, epochs: int, seed: int) -> list[SupervisedStats]:
        from repo_ray.learner.batch import collate_dialogues
        from repo_ray.learner.trainers import epoch_batches, sft_step

        max_tokens = self.cfg.learner.sft.max_tokens
        return [sft_step(self.policy, collate_dialogues([dialogues[i] for i in idx], self.tokenizer, max_tokens),
                         self.rank, self.world_size)
                for idx in epoch_batches(len(dialogues), self.cfg.learner.batch_size, epochs, seed)]

    def train_dpo(self, pairs, epochs: int, seed: int) -> list[SupervisedStats]:
        from repo_ray.learner.batch import collate_preferences
        from repo_ray.learner.trainers import dpo_step, epoch_batches

        dpo = self.cfg.learner.dpo
        return [dpo_step(self.policy, collate_preferences([pairs[i] for i in idx], self.tokenizer, dpo.max_tokens),
                         dpo.beta, self.rank, self.world_size)
                for idx in epoch_batches(len(pairs), self.cfg.learner.batch_size, epochs, seed)]

    # ---------------------------------------------------------------- weights
    def _gathered(self, module):
        """Full parameters for reading/writing: ZeRO-3 partitions them (a collective: every
        rank must enter); stages 0-2 keep them whole on every rank."""
        if self.cfg.learner.zero_stage != 3:
            return contextlib.nullcontext()
        import deepspeed

        return deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=0)

    def adapter_update(self, version: int, probe_token_ids: Sequence[int]) -> AdapterUpdate | None:
        """Every rank enters (ZeRO-3 gathers collectively); rank 0 returns the update."""
        from repo_ray.model.adapters import build_adapter_update

        with self._gathered(self.policy.module):
            update = build_adapter_update(self.policy.module, version, list(probe_token_ids))
        return update if self.rank == 0 else None

    def trainable_weights(self) -> dict[str, dict[str, torch.Tensor]]:
        from repo_ray.learner.models import trainable_state

        out = {}
        for name, eng in (("policy", self.policy), ("value", self.value)):
            if eng is not None:
                with self._gathered(eng.module):
                    out[name] = trainable_state(eng.module)
        return out

    # ---------------------------------------------------------------- checkpoints
    def _optimizer_tensors(self, eng: _DeepSpeedTrainable) -> dict[str, torch.Tensor]:
        """Full (unsharded) Adam moments per trainable parameter name, whatever the ZeRO stage."""
        from deepspeed.utils import safe_get_full_optimizer_state

        out = {}
        for name, p in eng.module.named_parameters():
            if not p.requires_grad:
                continue
            for key in ("exp_avg", "exp_avg_sq"):
                if self.cfg.learner.zero_stage == 0:
                    value = eng.engine.optimizer.state.get(p, {}).get(key)
                else:
                    value = safe_get_full_optimizer_state(p, key)  # a collective for ZeRO 1-3
                if value is not None:
                    out[f"{name}::{key}"] = value.detach().to("cpu").float().contiguous()
        return out

    def checkpoint_files(self) -> dict[str, bytes] | None:
        """Every rank enters (ZeRO gathers are collectives); rank 0 returns file name -> bytes."""
        from safetensors.torch import save as st_save

        from repo_ray.learner.models import trainable_state
        from repo_ray.model.adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS, adapter_bytes, peft_config_dict

        files: dict[str, bytes] = {}
        with self._gathered(self.policy.module):
            files[f"{POLICY_DIR}/{ADAPTER_WEIGHTS}"] = adapter_bytes(self.policy.module)
            peft_json = json.dumps(peft_config_dict(self.policy.module), indent=2)
            files[f"{POLICY_DIR}/{ADAPTER_CONFIG}"] = peft_json.encode()
        files[OPTIMIZER_FILE.format(model="policy")] = st_save(self._optimizer_tensors(self.policy))
        if self.value is not None:
            with self._gathered(self.value.module):
                files[VALUE_FILE] = st_save(trainable_state(self.value.module))
            files[OPTIMIZER_FILE.format(model="value")] = st_save(self._optimizer_tensors(self.value))
        state = {"format": CHECKPOINT_FORMAT, "mode": self.mode, "optimizer_steps": self.policy.engine.global_steps,
                 "value_optimizer_steps": self.value.engine.global_steps if self.value is not None else None,
                 "world_size": self.world_size, "zero_stage": self.cfg.learner.zero_stage}
        files[STATE_FILE] = json.dumps(state, indent=2).encode()
        return files if self.rank == 0 else None

    def load_checkpoint_files(self, files: dict[str, bytes]) -> int:
        """Restore weights, Adam moments, step counts and the warmup position; returns the step."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load as st_load

        from repo_ray.learner.models import load_trainable_state
        from repo_ray.model.adapters import ADAPTER_WEIGHTS

        state = json.loads(files[STATE_FILE])
        if state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(
                f"{STATE_FILE}: checkpoint format {state.get('format')!r}, expected {CHECKPOINT_FORMAT}")
        with self._gathered(self.policy.module):
            set_peft_model_state_dict(self.policy.module, st_load(files[f"{POLICY_DIR}/{ADAPTER_WEIGHTS}"]))
        self._restore(self.policy, st_load(files[OPTIMIZER_FILE.format(model="policy")]), state["optimizer_steps"])
        if self.value is not None:
            if VALUE_FILE not in files:
                raise CheckpointError(f"{VALUE_FILE}: missing; the checkpoint was written by mode {state['mode']!r}")
            with self._gathered(self.value.module):
                load_trainable_state(self.value.module, st_load(files[VALUE_FILE]))
            self._restore(self.value, st_load(files[OPTIMIZER_FILE.format(model="value")]),
                          state["value_optimizer_steps"] or 0)
        return int(state["optimizer_steps"])

    def _restore(self, eng: _DeepSpeedTrainable, moments: dict[str, torch.Tensor], steps: int) -> None:
        """Push the module's (just loaded) weights into ZeRO's fp32 master copies, restore the
        Adam moments and step counts, and replay the warmup schedule to `steps`."""
        from deepspeed.utils import safe_set_full_fp32_param, safe_set_full_optimizer_state

        stage = self.cfg.learner.zero_stage
        named = [(n, p) for n, p in eng.module.named_parameters() if p.requires_grad]
        with self._gathered(eng.module):
            weights = {n: p.detach().clone().float() for n, p in named}
        for name, p in named:
            keys = {k: moments[f"{name}::{k}"].to(p.device) for k in ("exp_avg", "exp_avg_sq")
                    if f"{name}::{k}" in moments}
            if stage == 0:
                if keys:
                    eng.engine.optimizer.state[p] = {"step": torch.tensor(float(steps)), **keys}
            elif stage == 3:
                self._set_zero3_partition(p, weights[name])
                for key, value in keys.items():
                    self._set_zero3_partition(p, value, key)
            else:  # ZeRO 1/2 keep fp32 master copies apart from the module's weights
                safe_set_full_fp32_param(p, weights[name].to(p.device))
                for key, value in keys.items():
                    safe_set_full_optimizer_state(p, value, key)
        if stage > 0:  # ZeRO's base optimizer holds one state per flat partition
            for st in eng.engine.optimizer.optimizer.state.values():
                if "step" in st:
                    st["step"] = torch.tensor(float(steps)) if torch.is_tensor(st["step"]) else steps
        eng.engine.global_steps = steps
        scheduler = eng.engine.lr_scheduler
        for _ in range(steps - scheduler.last_epoch):
            scheduler.step()

    def _set_zero3_partition(self, p: torch.nn.Parameter, full: torch.Tensor, key: str | None = None) -> None:
        """This rank's slice of a full fp32 value (or Adam moment) of a ZeRO-3 parameter.
        DeepSpeed 0.19's set_full_hp_param ignores the padding of the last partition (it
        fails for a tensor smaller than the world size), so the slice is cut here."""
        from deepspeed.utils import safe_set_local_fp32_param, safe_set_local_optimizer_state

        size = p.ds_tensor.numel()
        flat = torch.zeros(size * self.world_size, dtype=torch.float32, device=full.device)
        flat[: full.numel()] = full.flatten().float()
        local = flat[self.rank * size:(self.rank + 1) * size].to(p.ds_tensor.device)
        if key is None:
            safe_set_local_fp32_param(p, local)
        else:
            safe_set_local_optimizer_state(p, local, key)

    def shutdown(self) -> None:
        import deepspeed.comm as dist

        with contextlib.suppress(Exception):
            dist.destroy_process_group()
        if getattr(self, "store_dir", None):
            shutil.rmtree(self.store_dir, ignore_errors=True)


def resolve_mode(cfg: RepoRayConfig, mode: str | None) -> str:
    """The group's mode: `mode`, or learner.algorithm; ValueError for an unknown one."""
    mode = mode or cfg.learner.algorithm
    if mode not in MODES:
        raise ValueError(f"unknown learner mode {mode!r}; expected one of {', '.join(MODES)}")
    return mode


@dataclass(frozen=True)
class LearnerPlacement:
    """Where the ranks run, decided by repo_ray/pipeline/placement.py: a ready placement group
    with one bundle per rank, each rank's Ray actor options, and whether all ranks share one
    node (then they rendezvous through a file there)."""

    group: Any  # ray.util.placement_group.PlacementGroup
    rank_options: list[dict[str, Any]]
    one_node: bool


class LearnerGroup:
    """Driver-side handle of the learner job. Modes: repo, ppo, grpo (RL: `train_step`),
    sft (`sft`), dpo (`dpo`); `base_model_path` is the SFT-merged model for dpo and RL (the
    reference is the policy with its adapter disabled) and the ORIGINAL base for sft.

    RL reward per mode (learner/batch.py `reward_field`): repo trains on r_total (RM
    enhanced by judge and rules), ppo on r_model (RM only), grpo on r_model unless
    learner.grpo.reward is "enhanced" (then r_total). Masked samples never enter the loss.

    Start it with `repo_ray.pipeline.placement.start_learner_group`, which reserves the
    placement group and names the ranks. The group owns the placement from then on and
    frees it in `shutdown` (also when setup fails).
    """

    def __init__(self, cfg: RepoRayConfig, base_model_path: str | os.PathLike, tokenizer_path: str | os.PathLike,
                 placement: LearnerPlacement, mode: str | None = None):
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        self.cfg = cfg
        self.placement = placement.group
        self.ranks: list[Any] = []
        try:
            self.mode = resolve_mode(cfg, mode)
        except ValueError:
            self.shutdown()
            raise
        self.world_size = len(placement.rank_options)
        actor_cls = ray.remote(_DeepSpeedRank)
        cfg_json = cfg.model_dump_json()
        self.ranks = [
            actor_cls.options(
                **opts, scheduling_strategy=PlacementGroupSchedulingStrategy(self.placement,
                                                                             placement_group_bundle_index=i),
            ).remote(i, self.world_size, cfg_json, os.fspath(base_model_path), os.fspath(tokenizer_path), self.mode)
            for i, opts in enumerate(placement.rank_options)
        ]
        started = time.perf_counter()
        try:
            master_addr = ray.get(self.ranks[0].node_ip.remote())
            master_port = ray.get(self.ranks[0].free_port.remote())
            # every rank on rank 0's node (STRICT_PACK): rendezvous through a file there
            store = ray.get(self.ranks[0].new_store_path.remote()) if placement.one_node else None
            self.engine_init_s = max(ray.get([r.setup.remote(master_addr, master_port, store) for r in self.ranks]))
        except ray.exceptions.RayTaskError as err:
            self.shutdown()
            if (cause := remote_user_error(err)) is not None:  # e.g. a model path that cannot be loaded
                raise cause from None
            raise
        self.setup_s = time.perf_counter() - started
        self.optimizer_steps = 0

    def _all(self, method: str, *args) -> list[Any]:
        """Call `method` on every rank; fail fast when a rank dies (the others would wait in a
        collective until gloo's 30-minute timeout): the group is then ended, LearnerRankDied."""
        import ray

        refs = [getattr(r, method).remote(*args) for r in self.ranks]
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            try:
                ray.get(ready[0])
            except ray.exceptions.RayActorError as err:
                self._end_ranks()
                raise LearnerRankDied(f"learner rank {refs.index(ready[0])} died during {method}: "
                                      f"{type(err).__name__}") from err
            except ray.exceptions.RayTaskError:
                dead = self._dead_ranks()
                if dead:  # a peer's death surfaces in the others as a gloo error
                    self._end_ranks()
                    raise LearnerRankDied(f"learner rank(s) {dead} died during {method}") from None
                raise
        return ray.get(refs)

    def _dead_ranks(self) -> list[int]:
        import ray

        dead = []
        for i, r in enumerate(self.ranks):
            try:
                ray.get(r.node_ip.remote(), timeout=10)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                dead.append(i)
        return dead

    def _end_ranks(self) -> None:
        import ray

        for r in self.ranks:
            with contextlib.suppress(Exception):
                ray.kill(r)

    def train_step(self, batch) -> StepMetrics:
        """One RL step (repo / ppo / grpo) on a batch: a list of (Trajectory, RewardResult) or
        an ObjectRef to one (put once; every rank reads it and trains on its stride)."""
        import ray

        if self.mode not in RL_ALGORITHMS:
            raise ValueError(f"train_step is for RL modes; this group runs {self.mode!r}")
        ref = batch if isinstance(batch, ray.ObjectRef) else ray.put(list(batch))
        started = time.perf_counter()
        results = self._all("train_rl", ref)
        elapsed = time.perf_counter() - started
        stats = [r[0] for r in results]
        kl_coef = RLSettings.from_config(self.cfg.learner, self.mode).kl_coef
        metrics = summarize_rl(self.mode, stats, results[0][1], elapsed, kl_coef)
        self.optimizer_steps += metrics.optimizer_steps
        record("repo_ray_learner_step_seconds", elapsed)
        return metrics

    def sft(self, dialogues, epochs: int | None = None) -> list[SupervisedMetrics]:
        """SFT (mode sft) on `schemas.SftDialogue`s: learner.batch_size dialogues per optimizer
        step, `epochs` (default learner.sft.epochs) seeded shuffled passes. One record per step."""
        return self._supervised("sft", "train_sft", dialogues, epochs or self.cfg.learner.sft.epochs)

    def dpo(self, pairs, epochs: int | None = None) -> list[SupervisedMetrics]:
        """DPO (mode dpo) on `schemas.PreferencePair`s against the adapter-disabled base."""
        return self._supervised("dpo", "train_dpo", pairs, epochs or self.cfg.learner.dpo.epochs)

    def _supervised(self, mode: str, method: str, rows, epochs: int) -> list[SupervisedMetrics]:
        import ray

        if self.mode != mode:
            raise ValueError(f"{method} needs a group built with mode {mode!r}; this one runs {self.mode!r}")
        ref = rows if isinstance(rows, ray.ObjectRef) else ray.put(list(rows))
        started = time.perf_counter()
        per_rank = self._all(method, ref, epochs, self.cfg.seed)
        elapsed = time.perf_counter() - started
        steps = len(per_rank[0])
        out = [summarize_supervised(mode, [r[i] for r in per_rank], elapsed / max(1, steps)) for i in range(steps)]
        self.optimizer_steps += steps
        return out

    def publish_adapter(self, version: int, probe_token_ids: Sequence[int]) -> AdapterUpdate:
        """The current policy adapter as an AdapterUpdate from rank 0 (probe logprob included);
        hand it to pipeline.adapter_push.push_adapter, which puts it in the object store once."""
        return self._all("adapter_update", version, list(probe_token_ids))[0]

    def trainable_weights(self) -> list[dict[str, dict[str, torch.Tensor]]]:
        """Per rank: {"policy": name -> tensor, "value": ...} (tests assert ranks agree)."""
        return self._all("trainable_weights")

    def save_checkpoint(self, directory: str | os.PathLike) -> Path:
        """Write the policy adapter (peft dir, safetensors), the value LoRA + head, full Adam
        moments and step counts: safetensors + JSON only, no pickles. Files are written to a
        temporary name and renamed, learner_state.json last."""
        files = self._all("checkpoint_files")[0]
        out = Path(directory)
        for rel in sorted(files, key=lambda r: r == STATE_FILE):
            path = out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(files[rel])
            tmp.replace(path)
        return out

    def load_checkpoint(self, directory: str | os.PathLike) -> int:
        """Restore a checkpoint written by `save_checkpoint` (same mode; any world size or
        ZeRO stage: moments are stored unsharded). Returns the optimizer step it resumes at."""
        import ray

        root = Path(directory)
        if not (root / STATE_FILE).is_file():
            raise CheckpointError(f"{root}: no {STATE_FILE} (not a learner checkpoint, or an unfinished one)")
        files = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()
                 and not p.name.endswith(".tmp")}
        steps = self._all("load_checkpoint_files", ray.put(files))
        self.optimizer_steps = steps[0]
        return steps[0]

    def shutdown(self) -> None:
        """Leave the process group, end the rank actors and free the placement group."""
        import ray

        with contextlib.suppress(Exception):
            ray.get([r.shutdown.remote() for r in self.ranks], timeout=30)
        for r in self.ranks:
            with contextlib.suppress(Exception):
                ray.kill(r)
        with contextlib.suppress(Exception):
            ray.util.remove_placement_group(self.placement)
        self.ranks = []
