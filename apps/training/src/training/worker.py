"""A fine-tuning run in its own process: `python -m training.worker <job folder>/spec.json`.

Run alone, or by torchrun with `--nproc_per_node N` for data-parallel training (DDP over gloo
on CPU, NCCL on GPU). Rank 0 writes the progress file, checkpoints and the exported model.
A worker always starts from the newest complete checkpoint in its job folder, so starting it
again after a crash resumes the run; it stops on its own when the app that launched it is gone.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import load_file, load_model, save_file, save_model

from genai_platform.logs import configure_logging
from training.examples import IGNORE, TokenizedExample, hf_encode, hf_render, pad_batch, tokenize_example
from training.models import Hyperparameters
from training.progress import ProgressWriter
from training.spec import EXIT_STOPPED, JobSpec

log = logging.getLogger("training.worker")

# LoRA on the attention projections: the usual choice for instruction tuning of Llama-style models.
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
KEEP_CHECKPOINTS = 2


def total_steps(examples: int, hp: Hyperparameters) -> int:
    """Optimizer steps of a run: every epoch's batches, capped by max_steps when set."""
    steps = hp.n_epochs * math.ceil(examples / hp.batch_size)
    return min(steps, hp.max_steps) if hp.max_steps else steps


def batch_indices(step: int, examples: int, hp: Hyperparameters) -> list[int]:
    """The examples of global batch `step` (0-based): a function of the seed and the step alone,
    so a resumed run sees exactly the batches the interrupted one would have."""
    per_epoch = math.ceil(examples / hp.batch_size)
    epoch, position = divmod(step, per_epoch)
    order = torch.randperm(examples, generator=torch.Generator().manual_seed(hp.seed + epoch)).tolist()
    return order[position * hp.batch_size : (position + 1) * hp.batch_size]


def learning_rate_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then linear decay towards zero at the end of the run."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    remaining = max(total - warmup, 1)
    return max(0.0, 1.0 - (step - warmup) / remaining)


def owner_alive(pid: int) -> bool:
    """Whether the app process that launched this worker still runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return True
    return True


class Stop(Exception):
    """The run is to stop without failing: cancelled, or its owner is gone."""


class Worker:
    """One rank of a fine-tuning run (LoRA or full), in its own process: loads the base, trains
    from the last checkpoint on, reports progress records, and the leader (rank 0) evaluates,
    checkpoints and exports. The world comes from torchrun's WORLD_SIZE, RANK and LOCAL_RANK."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.hp = spec.hyperparameters
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.owner_pid = int(os.environ.get("TRAINING_OWNER_PID", "0"))
        self.stop_requested = False
        self.progress: ProgressWriter | None = None
        self.base_eval: float | None = None  # held-out loss of the base model, before any step
        self.device = self._pick_device()

    # --- set-up ------------------------------------------------------------------------------

    def _pick_device(self) -> torch.device:
        if self.spec.device == "auto":
            return torch.device(f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu")
        if self.spec.device == "cuda":
            return torch.device(f"cuda:{self.local_rank}")
        return torch.device(self.spec.device)

    @property
    def leader(self) -> bool:
        """Rank 0: the one that evaluates, checkpoints and exports."""
        return self.rank == 0

    def report(self, kind: str, **fields: Any) -> None:
        """Write a progress record (see training.progress), when this rank writes them."""
        if self.progress is not None:
            self.progress.write(kind, **fields)

    def check_running(self) -> None:
        """Raise `Stop` when a stop was asked (SIGTERM) or the app that launched the worker is gone."""
        if self.stop_requested:
            raise Stop("stop requested")
        if self.owner_pid and not owner_alive(self.owner_pid):
            raise Stop("the app that launched this worker is gone")

    def load(self) -> None:
        """Load the base model and tokenizer (LoRA adapters added), the optimizer and the tokenized examples.

        Raises ValueError when the base has no chat template or no example fits `max_seq_length`.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from genai_models.files import packaged_folder

        base_dir = self.spec.base_dir or packaged_folder(self.spec.model_cache_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(base_dir)
        if self.tokenizer.chat_template is None:
            raise ValueError("the base model has no chat template")
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        model.config.use_cache = False  # no KV cache while training: it only costs memory
        if self.spec.method == "lora":
            from peft import LoraConfig, get_peft_model

            config = LoraConfig(
                r=self.hp.lora_rank,
                lora_alpha=self.hp.lora_alpha,
                lora_dropout=self.hp.lora_dropout,
                target_modules=LORA_TARGETS,
                task_type="CAUSAL_LM",
            )
            model = get_peft_model(model, config)
        self.model = model.to(self.device)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.trainable, lr=self.hp.learning_rate, weight_decay=self.hp.weight_decay)

        render, encode = hf_render(self.tokenizer), hf_encode(self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

        def tokenize(path: Path) -> list[TokenizedExample]:
            if not path.exists():
                return []
            examples = []
            for line in path.read_text().splitlines():
                tokenized = tokenize_example(json.loads(line)["messages"], render, encode, self.hp.max_seq_length)
                if tokenized is not None:
                    examples.append(tokenized)
            return examples

        self.train_set = tokenize(self.spec.train_path)
        self.eval_set = tokenize(self.spec.eval_path)
        if not self.train_set:
            raise ValueError("no training example keeps an assistant token within max_seq_length")
        self.total = total_steps(len(self.train_set), self.hp)

    # --- checkpoints -------------------------------------------------------------------------

    def checkpoints(self) -> list[Path]:
        """The complete checkpoints, oldest first (a folder without its state.json is not one)."""
        folder = self.spec.checkpoint_dir
        if not folder.exists():
            return []
        return sorted(p for p in folder.glob("step-*") if (p / "state.json").exists())

    def weights_module(self) -> torch.nn.Module:
        """The model itself, unwrapped from DistributedDataParallel."""
        return self.model.module if isinstance(self.model, torch.nn.parallel.DistributedDataParallel) else self.model

    def save_checkpoint(self, step: int, trained_tokens: int, last_loss: float) -> None:
        """Write checkpoint `step-<n>` (weights or adapter, optimizer, RNG states, state.json) atomically
        by renaming a staging folder; only the newest KEEP_CHECKPOINTS are kept."""
        started = time.perf_counter()
        target = self.spec.checkpoint_dir / f"step-{step:06d}"
        staging = self.spec.checkpoint_dir / f".step-{step:06d}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        module = self.weights_module()
        if self.spec.method == "lora":
            from peft import get_peft_model_state_dict

            state = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(module).items()}
            save_file(state, staging / "adapter_model.safetensors")
        else:
            save_model(module, str(staging / "model.safetensors"))  # handles the tied embedding weights
        # Optimizer moments and RNG states are plain tensors: loaded back with weights_only=True.
        torch.save(self.optimizer.state_dict(), staging / "optimizer.pt")
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        torch.save(rng, staging / "rng.pt")
        state_json = {
            "step": step,
            "total": self.total,
            "trained_tokens": trained_tokens,
            "loss": last_loss,
            "base_eval_loss": self.base_eval,
        }
        (staging / "state.json").write_text(json.dumps(state_json))
        shutil.rmtree(target, ignore_errors=True)
        os.rename(staging, target)  # a checkpoint is complete or absent, never half-written
        for old in self.checkpoints()[:-KEEP_CHECKPOINTS]:
            shutil.rmtree(old, ignore_errors=True)
        size = sum(f.stat().st_size for f in target.iterdir())
        self.report(
            "checkpoint", step=step, path=str(target), bytes=size, seconds=round(time.perf_counter() - started, 3)
        )

    def restore_checkpoint(self, folder: Path) -> dict[str, Any]:
        """Load a checkpoint's weights, optimizer and RNG states; answers its state.json plus `seconds` taken."""
        started = time.perf_counter()
        module = self.weights_module()
        if self.spec.method == "lora":
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(module, load_file(folder / "adapter_model.safetensors", device=str(self.device)))
        else:
            load_model(module, str(folder / "model.safetensors"), device=str(self.device))
        self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location=self.device, weights_only=True))
        rng = torch.load(folder / "rng.pt", weights_only=True)
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        state = json.loads((folder / "state.json").read_text())
        state["seconds"] = round(time.perf_counter() - started, 3)
        return state

    # --- the run -----------------------------------------------------------------------------

    def batch_tensors(self, examples: list[TokenizedExample]) -> dict[str, torch.Tensor]:
        """`input_ids`, `attention_mask` and `labels` of the padded batch, on the worker's device."""
        ids, mask, labels = pad_batch(examples, self.pad_id)
        return {
            "input_ids": torch.tensor(ids, device=self.device),
            "attention_mask": torch.tensor(mask, device=self.device),
            "labels": torch.tensor(labels, device=self.device),
        }

    def sum_loss(self, model: torch.nn.Module, examples: list[TokenizedExample]) -> tuple[torch.Tensor, int]:
        """Summed token loss over a batch and the number of label tokens: ranks and batches of
        unequal size then average correctly (the model's own mean is per batch)."""
        batch = self.batch_tensors(examples)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        shifted = logits[:, :-1, :].reshape(-1, logits.size(-1)).float()
        targets = batch["labels"][:, 1:].reshape(-1)
        loss = torch.nn.functional.cross_entropy(shifted, targets, ignore_index=IGNORE, reduction="sum")
        return loss, int((targets != IGNORE).sum())

    @torch.no_grad()
    def evaluate(self) -> float | None:
        """Mean token loss (nats) over the validation examples; None when there are none."""
        if not self.eval_set:
            return None
        # The unwrapped module: DDP's forward syncs buffers with every rank, and only rank 0 evaluates.
        module = self.weights_module()
        module.eval()
        total, count = 0.0, 0
        for example in self.eval_set:
            loss, tokens = self.sum_loss(module, [example])
            total, count = total + float(loss), count + tokens
        module.train()
        return total / max(count, 1)

    def all_reduce(self, *values: float) -> list[float]:
        """`values` summed over every rank (as they are with one rank)."""
        if self.world == 1:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def run(self) -> None:
        """Train from the last checkpoint (or the start) to the last step, then export (leader).

        Raises `Stop` when stopped between steps; other errors end the run as failed (see `main`).
        """
        self.load()
        start_step, trained_tokens, last_loss = 0, 0, float("nan")
        existing = self.checkpoints()
        if existing:
            state = self.restore_checkpoint(existing[-1])
            start_step, trained_tokens, last_loss = state["step"], state["trained_tokens"], state["loss"]
            self.base_eval = state.get("base_eval_loss")
            self.report(
                "resumed", step=start_step, total_steps=self.total, path=str(existing[-1]), seconds=state["seconds"]
            )
        else:
            if self.leader:
                self.base_eval = self.evaluate()
            self.report(
                "started",
                total_steps=self.total,
                examples=len(self.train_set),
                eval_examples=len(self.eval_set),
                world_size=self.world,
                device=str(self.device),
                trainable_parameters=sum(p.numel() for p in self.trainable),
            )
            if self.base_eval is not None:
                self.report("eval", step=0, eval_loss=self.base_eval, base=True)
        if self.world > 1:
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.model.train()
        for step in range(start_step, self.total):
            self.check_running()
            began = time.perf_counter()
            for group in self.optimizer.param_groups:
                group["lr"] = self.hp.learning_rate * learning_rate_factor(step, self.total, self.hp.warmup_steps)
            indices = batch_indices(step, len(self.train_set), self.hp)
            # Every rank must run a forward and backward for DDP's gradient sync: a last batch
            # smaller than the world lends its examples round.
            indices = (indices * self.world)[: max(len(indices), self.world)]
            mine = [self.train_set[i] for i in indices[self.rank :: self.world]]
            loss_sum, label_tokens = self.sum_loss(self.model, mine)
            tokens = sum(len(e.input_ids) for e in mine)
            total_loss, total_labels, total_tokens = self.all_reduce(float(loss_sum.detach()), label_tokens, tokens)
            # Scale so the all-reduced (averaged) gradients equal those of the mean over the global batch.
            (loss_sum * self.world / max(total_labels, 1)).backward()
            torch.nn.utils.clip_grad_norm_(self.trainable, 1.0)
            lr = self.optimizer.param_groups[0]["lr"]
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            elapsed = time.perf_counter() - began
            last_loss = total_loss / max(total_labels, 1)
            trained_tokens += int(total_tokens)
            self.report(
                "step",
                step=step + 1,
                total_steps=self.total,
                loss=round(last_loss, 6),
                learning_rate=lr,
                tokens=int(total_tokens),
                tokens_per_second=round(total_tokens / elapsed, 2),
                trained_tokens=trained_tokens,
                seconds=round(elapsed, 4),
            )
            if (step + 1) % self.hp.checkpoint_every == 0 or step + 1 == self.total:
                if self.leader:
                    self.save_checkpoint(step + 1, trained_tokens, last_loss)
                if self.world > 1:
                    dist.barrier()
        if self.leader:
            self.finish(trained_tokens, last_loss, self.base_eval)

    def finish(self, trained_tokens: int, last_loss: float, base_eval: float | None) -> None:
        """Evaluate, then export the trained model (LoRA merged) in `output_dtype` to the output folder."""
        eval_loss = self.evaluate()
        if eval_loss is not None:
            self.report("eval", step=self.total, eval_loss=eval_loss)
        started = time.perf_counter()
        module = self.weights_module()
        if self.spec.method == "lora":
            module = module.merge_and_unload()  # plain weights: inference loads them like any model
        module = module.to(getattr(torch, self.spec.output_dtype))
        module.config.use_cache = True
        staging = self.spec.job_dir / ".output.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        module.save_pretrained(staging, safe_serialization=True)
        self.tokenizer.save_pretrained(staging)
        shutil.rmtree(self.spec.output_dir, ignore_errors=True)
        os.rename(staging, self.spec.output_dir)
        files = sorted(p.name for p in self.spec.output_dir.iterdir())
        self.report(
            "exported", path=str(self.spec.output_dir), files=files, seconds=round(time.perf_counter() - started, 3)
        )
        metrics = {"train_loss": last_loss}
        if eval_loss is not None:
            metrics["eval_loss"] = eval_loss
        if base_eval is not None:
            metrics["base_eval_loss"] = base_eval
        self.report("completed", output_dir=str(self.spec.output_dir), trained_tokens=trained_tokens, metrics=metrics)


def hold_job_lock(job_dir: Path, timeout: float = 120.0) -> int:
    """Take the job folder's lock: a worker from before a crash may still be finishing its step."""
    fd = os.open(job_dir / "worker.lock", os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError("another worker holds this job's folder") from None
            time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    """`python -m training.worker <job folder>/spec.json`: run one job's worker.

    Exit status: 0 done, EXIT_STOPPED stopped, 1 failed (a `failed` record says why), 2 usage.
    """
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        sys.stderr.write("usage: python -m training.worker <job folder>/spec.json\n")
        return 2
    spec = JobSpec.read(Path(args[0]))
    configure_logging(f"training-worker-{spec.job_id}", os.environ.get("LOG_LEVEL", "INFO"))
    worker = Worker(spec)
    signal.signal(signal.SIGTERM, lambda *_: setattr(worker, "stop_requested", True))
    threads = spec.torch_threads or max(1, (os.cpu_count() or 1) // max(worker.world, 1))
    torch.set_num_threads(threads)
    torch.manual_seed(spec.hyperparameters.seed + worker.rank)
    lock = None
    if worker.world > 1:
        backend = "nccl" if worker.device.type == "cuda" else "gloo"
        if worker.device.type == "cuda":
            torch.cuda.set_device(worker.device)
        dist.init_process_group(backend=backend)
    try:
        if worker.leader:
            lock = hold_job_lock(spec.job_dir)
            worker.progress = ProgressWriter(spec.progress_path)
        if worker.world > 1:
            dist.barrier()
        worker.run()
        return 0
    except Stop as stop:
        log.info("worker stopped", extra={"job": spec.job_id, "reason": str(stop)})
        return EXIT_STOPPED
    except Exception as error:
        log.exception("training failed", extra={"job": spec.job_id})
        worker.report("failed", reason=f"{type(error).__name__}: {error}"[:500])
        return 1
    finally:
        if worker.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
        if worker.progress is not None:
            worker.progress.close()
        if lock is not None:
            os.close(lock)


if __name__ == "__main__":
    sys.exit(main())
