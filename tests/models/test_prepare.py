"""`mothbrain models prepare`: a GGUF or an HF folder becomes a ready base that loads as the source did.

The sources are built here: a tiny random LlamaForCausalLM saved as an HF folder, and the same model
written as a GGUF with gguf's own writer (llama.cpp's tensor names and its q/k row order), so the
prepared base can be compared with the model it came from, logit for logit.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from mothbrain.cli import main
from mothbrain.config import REPO_ROOT, load_config
from mothbrain.core.base_location import base_model_location, is_prepared
from mothbrain.errors import MothError
from mothbrain.models.loading import load_base_model, load_tokenizer
from mothbrain.models.preflight import base_model_check
from mothbrain.models.prepare import prepare_base, sha256_file, verify_prepared

DEMO_CONFIG = REPO_ROOT / "configs" / "demo-tiny.yaml"
TEXTS = ["The moth flies to the lantern at night. Compost and memory go together; figs teach patience."] * 20
PROBE = "The moth flies to the compost lantern."
CHAT_TEMPLATE = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
ARCH = dict(
    hidden_size=64,  # multiples of 64: bitsandbytes' 4-bit blocks tile the weights
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    tie_word_embeddings=False,
)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """(model, tokenizer, HF folder, GGUF file) of one tiny random Llama."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from mothbrain.models.tiny import train_tokenizer

    tok = train_tokenizer(TEXTS, 300)
    tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    eos = tok.eos_token_id
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), bos_token_id=eos, eos_token_id=eos, **ARCH)).eval()
    root = tmp_path_factory.mktemp("source")
    hf = root / "tiny-llama-hf"
    model.save_pretrained(hf)
    tok.save_pretrained(hf)
    gguf_dir = root / "gguf"
    gguf_dir.mkdir()
    gguf_file = gguf_dir / "Tiny-Llama.Q8_0.gguf"  # F32 inside; the name only exercises the default --name
    _write_gguf(model, tok, gguf_file)
    return model, tok, hf, gguf_file


def _write_gguf(model, tok, path: Path) -> None:
    """The model as llama.cpp's converter writes a llama: its key names, q/k rows permuted for its rope."""
    import gguf
    import numpy as np

    c = model.config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_freq_base(10000.0)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    spec = json.loads(tok.backend_tokenizer.to_str())
    tokens = [t for t, _ in sorted(spec["model"]["vocab"].items(), key=lambda kv: kv[1])]
    special = {a["id"] for a in spec["added_tokens"]}
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for i in range(len(tokens))])
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in spec["model"]["merges"]])
    w.add_bos_token_id(tok.eos_token_id)
    w.add_eos_token_id(tok.eos_token_id)
    w.add_pad_token_id(tok.pad_token_id)
    w.add_chat_template(CHAT_TEMPLATE)

    def permute(x, heads):  # llama.cpp's LlamaModel.permute
        return x.reshape(heads, 2, x.shape[0] // heads // 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)

    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    for i in range(c.num_hidden_layers):
        p = f"model.layers.{i}."
        w.add_tensor(f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"])
        w.add_tensor(f"blk.{i}.attn_q.weight", permute(sd[p + "self_attn.q_proj.weight"], c.num_attention_heads))
        w.add_tensor(f"blk.{i}.attn_k.weight", permute(sd[p + "self_attn.k_proj.weight"], c.num_key_value_heads))
        w.add_tensor(f"blk.{i}.attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        w.add_tensor(f"blk.{i}.attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        w.add_tensor(f"blk.{i}.ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    w.add_tensor("output.weight", sd["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _cfg(name: str, *overrides: str):
    base = ["model.build_tiny=false", f"model.base={name}", "model.quantization.load_in_4bit=false"]
    return load_config(DEMO_CONFIG, base + list(overrides))


def _logits(model, tok) -> torch.Tensor:
    ids = tok(PROBE, return_tensors="pt").input_ids
    with torch.no_grad():
        return model(ids).logits.float()


def test_an_hf_folder_is_copied_and_loads_with_the_same_logits(source):
    model, tok, hf, _ = source
    cfg = _cfg("tiny-llama")
    report = prepare_base(cfg, hf, "tiny-llama", quantize=False)
    folder = report.path
    assert folder == base_model_location(cfg) and is_prepared(folder) and not report.already
    m = report.manifest
    assert m["architecture"] == "LlamaForCausalLM" and m["model_type"] == "llama"
    assert m["parameters"] == model.num_parameters() and m["dtype"] == "float32" and m["nf4"] is None
    assert m["source"]["path"] == str(hf) and m["source"]["kind"] == "hf" and len(m["source"]["sha256"]) == 64
    assert m["created_at"] and m["mothbrain_version"]
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(m["files"]) == on_disk
    for rel, rec in m["files"].items():
        assert rec == {"size": (folder / rel).stat().st_size, "sha256": sha256_file(folder / rel)}
    assert m["files"]["model.safetensors"]["sha256"] == sha256_file(hf / "model.safetensors")  # copied as is

    loaded = load_base_model(cfg)
    ptok = load_tokenizer(cfg)
    assert ptok(PROBE).input_ids == tok(PROBE).input_ids and ptok.chat_template == CHAT_TEMPLATE
    assert torch.equal(_logits(loaded, ptok), _logits(model, tok))


def test_a_gguf_becomes_the_model_it_was_made_from(source):
    model, tok, _, gguf_file = source
    cfg = _cfg("tiny-llama-f32")
    report = prepare_base(cfg, gguf_file, "tiny-llama-f32", quantize=False, dtype="float32")
    m = report.manifest
    assert m["source"]["kind"] == "gguf" and m["source"]["sha256"] == sha256_file(gguf_file)
    assert m["parameters"] == model.num_parameters() and m["architecture"] == "LlamaForCausalLM"
    ptok = load_tokenizer(cfg)
    assert ptok(PROBE).input_ids == tok(PROBE).input_ids
    assert ptok.chat_template == CHAT_TEMPLATE  # from the GGUF's metadata
    torch.testing.assert_close(_logits(load_base_model(cfg), ptok), _logits(model, tok), atol=1e-5, rtol=1e-5)

    # The default: a folder holding one .gguf, the name from the file (quant tag dropped), bfloat16 weights.
    report = prepare_base(_cfg("x"), gguf_file.parent, quantize=False)
    assert report.name == "tiny-llama" and report.manifest["dtype"] == "bfloat16"
    bf16 = _logits(load_base_model(_cfg("tiny-llama")), ptok)
    assert (bf16 - _logits(model, tok)).abs().max() < 0.05  # bfloat16 rounding of the weights, nothing more


def test_the_nf4_copy_loads_exactly_as_quantizing_on_load(source):
    _, tok, hf, _ = source
    cfg = _cfg("tiny-nf4", "model.quantization.load_in_4bit=true")
    report = prepare_base(cfg, hf, "tiny-nf4")  # 4-bit configured: the copy is made by default
    nf4 = report.manifest["nf4"]
    assert nf4["device"] == "cpu" and nf4["settings"]["quant_type"] == "nf4" and nf4["settings"]["double_quant"]
    assert any(k.startswith("nf4/") and k.endswith(".safetensors") for k in report.manifest["files"])
    assert nf4["bytes"] < report.manifest["weights_bytes"]

    from_copy = load_base_model(cfg)
    assert from_copy.name_or_path.endswith("/nf4")
    quantized_now = load_base_model(cfg, location=str(hf))
    assert type(from_copy.model.layers[0].mlp.up_proj).__name__ == "Linear4bit"
    assert torch.equal(_logits(from_copy, tok), _logits(quantized_now, tok))

    # A run asking for other 4-bit settings does not take the copy: it quantizes while loading.
    fp4 = load_base_model(_cfg("tiny-nf4", "model.quantization.load_in_4bit=true", "model.quantization.quant_type=fp4"))
    assert not fp4.name_or_path.endswith("/nf4")


def test_a_rerun_does_nothing_and_another_source_needs_force(source, tmp_path):
    _, _, hf, gguf_file = source
    cfg = _cfg("base")
    first = prepare_base(cfg, hf, "base", quantize=False)
    again = prepare_base(cfg, hf, "base", quantize=False)
    assert again.already and again.manifest == first.manifest
    with pytest.raises(MothError, match="already holds a prepared base .*--force"):
        prepare_base(cfg, gguf_file, "base", quantize=False)
    replaced = prepare_base(cfg, gguf_file, "base", quantize=False, force=True)
    assert replaced.manifest["source"]["kind"] == "gguf" and not replaced.already
    assert not list(replaced.path.parent.glob(".base.*"))  # no temp or old folder left beside it


def test_an_interrupted_prepare_leaves_nothing_that_looks_prepared(source, monkeypatch):
    _, _, hf, _ = source
    cfg = _cfg("half")
    models = base_model_location(_cfg("x", "model.build_tiny=true")).parent
    seen = {}

    def killed(tmp, final):  # the moment before the rename: everything written, the manifest too
        seen["tmp"] = (tmp / "manifest.json").is_file()
        seen["final"] = final.exists()
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr("mothbrain.models.prepare.replace_folder", killed)
        with pytest.raises(KeyboardInterrupt):
            prepare_base(cfg, hf, "half", quantize=False)
        assert seen == {"tmp": True, "final": False}
        assert not (models / "half").exists() and not list(models.glob(".half.*"))  # cleaned up on the way out

        # kill -9: no cleanup runs at all. What is left is a hidden temp folder, never the base.
        m.setattr(shutil, "rmtree", lambda *a, **k: None)
        with pytest.raises(KeyboardInterrupt):
            prepare_base(cfg, hf, "half", quantize=False)
    assert list(models.glob(".half.*.tmp")) and not is_prepared(models / "half")
    with pytest.raises(MothError, match="not prepared under"):
        base_model_location(cfg)
    assert base_model_check(cfg).status == "fail"

    assert prepare_base(cfg, hf, "half", quantize=False).path == models / "half"
    assert not list(models.glob(".half.*"))  # the next prepare cleared the leftover


def test_doctor_catches_a_damaged_or_truncated_weight_file(source):
    _, _, hf, _ = source
    cfg = _cfg("checked")
    folder = prepare_base(cfg, hf, "checked", quantize=False).path
    ok = base_model_check(cfg)
    assert ok.status == "ok" and "files match the manifest" in ok.detail and "sha256 of every file" in ok.detail

    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside a tensor: same size, same header
    weights.write_bytes(bytes(data))
    bad = base_model_check(cfg)
    assert bad.status == "fail" and "model.safetensors: sha256 differs" in bad.detail
    assert bad.fix == f"run `mothbrain models prepare {hf} --name checked --force`"
    assert "\n" not in bad.detail + bad.fix

    weights.write_bytes(bytes(data[: len(data) // 3]))  # a copy cut short
    cut = base_model_check(cfg)
    assert cut.status == "fail" and "model.safetensors has" in cut.detail and "the manifest says" in cut.detail
    assert verify_prepared(folder).problems

    missing = base_model_check(_cfg("never-prepared"))
    assert missing.status == "fail" and "not prepared under" in missing.detail
    assert missing.fix == "run `mothbrain models prepare <gguf file or HF folder> --name never-prepared`"


def test_doctor_checks_a_local_folder_and_the_tiny_base(source, tmp_path):
    _, _, hf, _ = source
    assert base_model_check(_cfg(str(hf))).status == "ok"
    empty = tmp_path / "no-weights"
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    check = base_model_check(_cfg(str(empty)))
    assert check.status == "fail" and "no weights" in check.detail
    tiny = base_model_check(load_config(DEMO_CONFIG))
    assert tiny.status == "ok" and "built on first use" in tiny.detail
    assert base_model_location(_cfg("Qwen/Qwen2.5-72B")) == "Qwen/Qwen2.5-72B"  # hub ids unchanged


def _one_line_error(*args: str) -> str:
    res = CliRunner().invoke(main, ["models", "prepare", *args])
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output and res.output.count("\n") == 1, res.output
    assert res.output.startswith("Error: ")
    return res.output


def test_a_bad_source_is_one_clear_line(source, tmp_path):
    _, _, hf, gguf_file = source
    assert "no such file or folder" in _one_line_error(str(tmp_path / "nowhere"))
    (tmp_path / "notes.txt").write_text("hello")
    assert "not a .gguf file" in _one_line_error(str(tmp_path / "notes.txt"))
    (tmp_path / "empty").mkdir()
    assert "neither a Hugging Face model folder" in _one_line_error(str(tmp_path / "empty"))
    junk = tmp_path / "junk" / "model.gguf"
    junk.parent.mkdir()
    junk.write_bytes(b"this is not a gguf at all" * 100)
    assert "not a readable GGUF file" in _one_line_error(str(junk))
    shutil.copy(gguf_file, junk.parent / "other.gguf")
    assert "pick one with --gguf-file" in _one_line_error(str(junk.parent))
    assert "--gguf-file 'x.gguf' is not in" in _one_line_error(str(junk.parent), "--gguf-file", "x.gguf")
    half = tmp_path / "half-download"
    half.mkdir()
    shutil.copy(hf / "config.json", half / "config.json")
    assert "config.json but no weights" in _one_line_error(str(half))
    assert "--name '../up'" in _one_line_error(str(hf), "--name", "../up")


def test_the_cli_prepares_and_verifies(source, state_home):
    _, _, hf, _ = source
    runner = CliRunner()
    res = runner.invoke(main, ["models", "prepare", str(hf), "--name", "cli-base", "--no-quantize", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("{") :])
    assert out["name"] == "cli-base" and not out["already"] and out["manifest"]["nf4"] is None
    assert Path(out["path"]) == state_home / "data" / "models" / "cli-base"
    assert runner.invoke(main, ["models", "verify", "cli-base"]).exit_code == 0
    (Path(out["path"]) / "tokenizer.json").write_text("{}")
    res = runner.invoke(main, ["models", "verify", "cli-base"])
    assert res.exit_code == 1 and "tokenizer.json" in res.output
