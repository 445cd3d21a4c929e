"""Building the trainer: the 4-bit base with LoRA (fresh, or grown from the current adapter), the rows it
trains on (replay mixed in), and trl's SFTConfig/SFTTrainer set from cfg.train."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from mothbrain.config import Config
from mothbrain.core import paths
from mothbrain.core.current import adapter_is_complete
from mothbrain.models.loading import (
    MODEL_BUILD_LOCK,
    compute_dtype,
    load_base_model,
    load_tokenizer,
    quiet_libraries,
    resolve_device,
)
from mothbrain.train.callbacks import FiniteLoss, StepsForStatus, report_to_callbacks, show_loss_on_progress_bar
from mothbrain.train.ranks import rank, world_size

# Optimizers that need CUDA (bitsandbytes paged / 8-bit states); on CPU plain AdamW is used.
CUDA_ONLY_OPTIMIZERS = ("paged_", "8bit")


def build_trainer(cfg: Config, version: str, train_rows, callbacks: list):
    """Model (4-bit base + LoRA) and a trl SFTTrainer configured from cfg.train."""
    import torch
    from peft import LoraConfig as PeftLoraConfig
    from peft import PeftModel, prepare_model_for_kbit_training
    from trl import SFTConfig, SFTTrainer

    quiet_libraries()
    # transformers 5 renamed gradient -> activation checkpointing; peft/trl still call the old names
    warnings.filterwarnings("ignore", message=".*deprecated and will be removed in v6.*", category=FutureWarning)
    t = cfg.train
    device, dtype = resolve_device(cfg), compute_dtype(cfg)
    distributed = world_size() > 1
    fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    notes: list[str] = []  # warnings for the report

    tokenizer = load_tokenizer(cfg)
    model = load_base_model(cfg, for_training=True)
    if dtype == torch.float16 and not distributed:
        # fp16 needs fp32 norms and embeddings to stay stable; with bf16/fp32 compute the Trainer
        # and trl already freeze the base, enable input grads and checkpointing, and the fp32 upcast
        # would cost ~5 GB on the 72B (embeddings + lm_head) that the memory estimate does not hold.
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=t.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )

    init_from, peft_config, current = "base", None, None
    if t.init_from == "current":
        current = _current_adapter(cfg, notes)
    if current is not None:
        # Grow the promoted adapter instead of starting over.

        with MODEL_BUILD_LOCK:
            model = PeftModel.from_pretrained(model, str(current), is_trainable=True)
        init_from = f"current ({current.name})"
    else:
        peft_config = PeftLoraConfig(
            r=cfg.lora.r,
            lora_alpha=cfg.lora.alpha,
            lora_dropout=cfg.lora.dropout,
            target_modules=list(cfg.lora.target_modules),
            task_type="CAUSAL_LM",
        )
    rows, replay = select_rows(cfg, train_rows, growing=current is not None, warnings=notes)

    optim = t.optimizer
    if device != "cuda" and any(s in optim for s in CUDA_ONLY_OPTIMIZERS):
        optim = "adamw_torch"
    elif fsdp and any(s in optim for s in CUDA_ONLY_OPTIMIZERS):
        optim = "adamw_torch"  # bitsandbytes' 8-bit/paged states break FSDP checkpoint saving (peft docs)
        notes.append(f"train.optimizer {t.optimizer} does not checkpoint under FSDP; adamw_torch used")
    ckpt_key = (
        "activation_checkpointing"
        if "activation_checkpointing" in SFTConfig.__dataclass_fields__
        else "gradient_checkpointing"
    )  # transformers 5 renamed it
    args = SFTConfig(
        output_dir=str(paths.checkpoints_dir(cfg, version)),
        max_steps=t.max_steps,
        num_train_epochs=t.num_epochs,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio if t.warmup_ratio < 1 else int(t.warmup_ratio),  # a float < 1 is a ratio
        per_device_train_batch_size=t.micro_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation,
        max_length=t.max_seq_len,
        packing=t.packing,
        packing_strategy="bfd",  # best-fit decreasing; implies padding-free (position_ids, no cross-sample attention)
        completion_only_loss=True,  # the loss is on the voice's tokens only
        **{ckpt_key: t.gradient_checkpointing, f"{ckpt_key}_kwargs": {"use_reentrant": False}},
        optim=optim,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        data_seed=t.seed,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.keep_checkpoints,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        include_num_input_tokens_seen="all" if t.packing else "non_padding",  # padding-free: every token is real
        report_to="none",
        use_cpu=device == "cpu",
        bf16=device == "cuda" and dtype == torch.bfloat16,
        fp16=device == "cuda" and dtype == torch.float16,
        use_liger_kernel=bool(t.use_liger and device == "cuda" and _liger_available()),
        dataloader_num_workers=0,
        disable_tqdm=rank() != 0,
        log_level="error",
        ddp_find_unused_parameters=False,
    )

    with MODEL_BUILD_LOCK:  # peft's empty-weight context is process-wide (see modeling.py)
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=rows,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[c for c in callbacks if c is not None],
        )
    if not (trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled):
        # trl stores QLoRA adapters in bf16 (the paper's recipe); we keep fp32 master weights, as the
        # memory estimate assumes: late in a cosine schedule Adam's steps (~lr) fall below bf16's
        # resolution for weights of ~1e-2 and would be lost. Matmuls still run in bf16 under autocast
        # on GPU. (FSDP needs one dtype per flattened group, so there trl's bf16 stays.)
        for p in trainer.model.parameters():
            if p.requires_grad and p.dtype != torch.float32:
                p.data = p.data.float()
    show_loss_on_progress_bar(trainer)
    trainer.add_callback(FiniteLoss())
    if rank() == 0:
        trainer.add_callback(StepsForStatus(cfg))
        for cb in report_to_callbacks(cfg, version):
            trainer.add_callback(cb)
    info = {
        "pad_share": pad_share(trainer),
        "samples": len(rows),
        "replay_samples": replay,
        "init_from": init_from,
        "optimizer": optim,
        "warnings": notes,
    }
    return trainer, info


def select_rows(cfg: Config, rows, growing: bool, warnings: list[str] | None = None):
    """(rows to train on, replay count): all rows; when growing the current adapter, the recent
    ones plus older ones so that replay / (recent + replay) = train.replay_share. Shuffled (with
    train.seed): the data set keeps its rows in document order, and trl packs neighbouring rows
    together, so unshuffled rows would share packed sequences with their own context."""
    keep = ("prompt", "completion")
    drop = [c for c in rows.column_names if c not in keep]
    if not growing or "recent" not in rows.column_names:
        return rows.remove_columns(drop).shuffle(seed=cfg.train.seed), 0
    recent = rows.filter(lambda r: r["recent"])
    older = rows.filter(lambda r: not r["recent"])
    if len(recent) == 0:
        if warnings is not None:
            warnings.append("no recent samples in the data set; trained on all of it")
        return rows.remove_columns(drop).shuffle(seed=cfg.train.seed), 0
    share = cfg.train.replay_share
    n_replay = min(len(older), int(round(len(recent) * share / (1.0 - share))))
    if n_replay < round(len(recent) * share / (1.0 - share)) and warnings is not None:
        warnings.append(f"only {len(older)} older samples for replay; replay share is below {share:g}")
    from datasets import concatenate_datasets

    replay = older.shuffle(seed=cfg.train.seed).select(range(n_replay))
    mixed = concatenate_datasets([recent, replay]).shuffle(seed=cfg.train.seed)
    return mixed.remove_columns(drop), n_replay


def pad_share(trainer, batches: int = 32) -> float:
    """Share of padded positions in the first batches the trainer will see (0 when padding-free)."""
    pads = total = 0
    for i, batch in enumerate(trainer.get_train_dataloader()):
        ids = batch["input_ids"]
        total += ids.numel()
        if "attention_mask" in batch:
            pads += int((batch["attention_mask"] == 0).sum())
        elif "position_ids" in batch:  # padding-free: only a pad_to_multiple_of tail can be padding
            pads += int((ids == trainer.processing_class.pad_token_id).sum()) if trainer.args.pad_to_multiple_of else 0
        if i + 1 >= batches:
            break
    return round(pads / total, 4) if total else 0.0


def _current_adapter(cfg: Config, warnings: list[str]) -> Path | None:
    """The promoted adapter to grow, when there is one of the configured shape."""

    link = paths.current_adapter_link(cfg)
    if not (link.exists() and adapter_is_complete(link)):
        return None
    conf = json.loads((link / "adapter_config.json").read_text())
    if conf.get("r") != cfg.lora.r or set(conf.get("target_modules") or []) != set(cfg.lora.target_modules):
        warnings.append(
            f"the current adapter ({link.resolve().name}) has r={conf.get('r')} and other target "
            "modules than lora.*; started a fresh adapter instead of growing it"
        )
        return None
    return link.resolve()


def _liger_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("liger_kernel") is not None
