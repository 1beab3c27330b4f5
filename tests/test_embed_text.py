"""`uqf embed-text`: the bundled MiniLM on a tiny dataset, mean pooling on a tiny random Llama, text
building, determinism and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from uqf_cli.cli import app
from uqf_cli.core.errors import OptionError
from uqf_cli.data.dataset import Dataset
from uqf_cli.embed import build_texts, embed_text, item_text, resolve_model
from uqf_cli.embed.models import bundled_minilm_path, encode_with_mean_pooling, load_for_mean_pooling
from uqf_cli.files import load_embeddings

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer randomly initialised Llama with MiniLM's tokenizer, saved like any local model."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    d = tmp_path_factory.mktemp("tiny-llama")
    tok = AutoTokenizer.from_pretrained(bundled_minilm_path())
    tok.save_pretrained(d)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(d)
    return d


def test_minilm_file_contract(tiny_ds: Path, tmp_path: Path) -> None:
    out = tmp_path / "text.st"
    res = embed_text(tiny_ds, out)
    ef = load_embeddings(out)
    ds = Dataset.load(tiny_ds)
    assert ef.embeddings.shape == (12, 384) and ef.embeddings.dtype == torch.float32
    assert ef.item_ids == ds.item_ids
    assert ef.modality == "text"
    assert ef.dataset_fingerprint == ds.fingerprint
    assert torch.allclose(ef.embeddings.norm(dim=1), torch.ones(12), atol=1e-5)
    params = ef.provenance["parameters"]
    assert params["model"]["name"] == "all-MiniLM-L6-v2"
    assert params["pooling"] == "model"
    assert params["fields"] == ["title", "brand", "categories", "description"]
    assert params["max_length"] == 128
    assert set(ef.provenance["inputs"]) == {"items", "model"}
    assert res.items == 12 and res.items_per_second > 0

    again = tmp_path / "again.st"
    embed_text(tiny_ds, again)
    assert torch.equal(load_embeddings(again).embeddings, ef.embeddings)  # deterministic on CPU

    titles = tmp_path / "titles.st"
    embed_text(tiny_ds, titles, template="{title}", normalize=False)
    other = load_embeddings(titles)
    assert not torch.allclose(other.embeddings, ef.embeddings)
    assert other.provenance["parameters"]["template"] == "{title}"


def test_item_text_building(tiny_ds: Path) -> None:
    fields = {"title": "Pen", "brand": "", "categories": ["Office", "Pens"], "description": None}
    assert item_text(fields, ["title", "brand", "categories"], None) == "title: Pen; categories: Office Pens"
    assert item_text(fields, [], "{title} | {brand} | {description}") == "Pen | |"
    ds = Dataset.load(tiny_ds)
    texts = build_texts(ds, ["title"], None)
    assert texts[0] == "title: " + ds.items[ds.item_ids[0]]["title"]
    with pytest.raises(OptionError, match="colour"):
        build_texts(ds, ["title", "colour"], None)
    with pytest.raises(OptionError, match="--template"):
        build_texts(ds, [], "{0}")


def test_mean_pooling_tiny_llama(tiny_ds: Path, tmp_path: Path, tiny_llama: Path) -> None:
    out = tmp_path / "llama.st"
    res = embed_text(tiny_ds, out, model=str(tiny_llama), normalize=False, batch_size=5)
    assert res.pooling == "mean"  # no sentence-transformers config: auto picks mean pooling
    ef = load_embeddings(out)
    assert ef.embeddings.shape == (12, 32)
    assert ef.provenance["parameters"]["pooling"] == "mean"

    # the pooled vector is the plain mean of the last hidden states of that text alone
    from transformers import AutoModel, AutoTokenizer

    ds = Dataset.load(tiny_ds)
    text = build_texts(ds, ["title", "brand", "categories", "description"], None)[3]
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    net = AutoModel.from_pretrained(tiny_llama).eval()
    with torch.no_grad():
        hidden = net(**tok([text], return_tensors="pt")).last_hidden_state[0]
    assert torch.allclose(ef.embeddings[3], hidden.mean(dim=0), atol=1e-5)


def test_mean_pooling_ignores_padding(tiny_llama: Path) -> None:
    tok, net = load_for_mean_pooling(resolve_model(str(tiny_llama)), torch.device("cpu"), False, False)
    short, long = "a pen", "a very long description of a large box of paper clips and staples"
    alone = encode_with_mean_pooling([short], tok, net, max_length=64, batch_size=1)
    padded = encode_with_mean_pooling([long, short], tok, net, max_length=64, batch_size=2)
    assert torch.allclose(alone[0], padded[1], atol=1e-5)
    truncated = encode_with_mean_pooling([long], tok, net, max_length=4, batch_size=1)
    assert not torch.allclose(truncated[0], padded[0])


def test_bundled_smollm2_resolves_to_gguf() -> None:
    m = resolve_model("smollm2")
    assert m.gguf_file is not None and (Path(m.location) / m.gguf_file).is_file()


def test_cli_prints_items_per_second_and_json(tiny_ds: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.st"
    res = runner.invoke(app, ["embed-text", str(tiny_ds), "-o", str(out), "--fields", "title"])
    assert res.exit_code == 0, res.output
    assert "items/s" in res.stdout and "[12, 384]" in res.stdout
    res = runner.invoke(app, ["embed-text", str(tiny_ds), "-o", str(out)])
    assert res.exit_code == 2 and "--force" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["embed-text", str(tiny_ds), "-o", str(out), "--force", "--json", "-q"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["dim"] == 384


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--pooling", "max"], "--pooling"),
        (["--fields", "colour"], "colour"),
        (["--max-length", "0"], "--max-length"),
        (["--model", "./no/such/model"], "no such local model"),
        (["--model", "smollm2", "--pooling", "model"], "--pooling"),
        (["--device", "cuda:7"] if not torch.cuda.is_available() else ["--device", "nonsense"], "--device"),
    ],
)
def test_cli_bad_options(tiny_ds: Path, tmp_path: Path, args: list[str], fragment: str) -> None:
    out = tmp_path / "t.st"
    res = runner.invoke(app, ["embed-text", str(tiny_ds), "-o", str(out), *args])
    assert res.exit_code == 2, res.output
    assert fragment in res.output and "Traceback" not in res.output
    assert not out.exists()


def test_cli_bad_dataset(tmp_path: Path) -> None:
    res = runner.invoke(app, ["embed-text", str(tmp_path / "missing"), "-o", str(tmp_path / "t.st")])
    assert res.exit_code == 2 and "not found" in res.output
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "items.jsonl").write_text('{"item_id": "1", "title": "a"}\n{"item_id": "1", "title": "b"}\n')
    (bad / "sequences.jsonl").write_text('{"user_id": "u", "item_ids": ["1"]}\n')
    res = runner.invoke(app, ["embed-text", str(bad), "-o", str(tmp_path / "t.st")])
    assert res.exit_code == 2 and "duplicate item id" in res.output and "line 2" in res.output


# ---- which fields without --fields -------------------------------------------------------------


def _write_items(path: Path, items: dict[str, dict]) -> Path:
    from uqf_cli.files import write_dataset_dir

    seqs = {f"u{u}": [str((u + k) % len(items)) for k in range(4)] for u in range(6)}
    write_dataset_dir(path, {str(k): v for k, v in zip(range(len(items)), items.values(), strict=True)}, seqs,
                      {"source": "synthetic"})
    return path


def test_only_a_name_field_works_without_fields(tmp_path: Path) -> None:
    items = {str(k): {"name": f"stapler model {k}", "colour": ["red", "black"][k % 2], "price": 3.5 + k}
             for k in range(5)}
    ds_dir = _write_items(tmp_path / "ds", items)
    out = tmp_path / "t.st"
    res = runner.invoke(app, ["embed-text", str(ds_dir), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "every string field: name, colour" in " ".join(res.stderr.split())  # on stderr, in first-seen order
    ef = load_embeddings(out)
    assert ef.embeddings.shape == (5, 384)
    params = ef.provenance["parameters"]
    assert params["fields"] == ["name", "colour"] and params["fields_chosen"] == "all string fields"
    # the same as naming those fields explicitly
    named = tmp_path / "named.st"
    assert runner.invoke(app, ["embed-text", str(ds_dir), "-o", str(named), "--fields", "name,colour"]).exit_code == 0
    assert torch.equal(load_embeddings(named).embeddings, ef.embeddings)
    assert load_embeddings(named).provenance["parameters"]["fields_chosen"] == "option"


def test_field_choice_rules() -> None:
    from uqf_cli.embed import choose_fields

    full = choose_fields({"1": {"title": "a", "brand": "b", "categories": "c", "description": "d"}}, None)
    assert full.fields == ("title", "brand", "categories", "description") and full.note is None
    some = choose_fields({"1": {"title": "a", "name": "n"}, "2": {"brand": "b"}}, None)
    assert some.fields == ("title", "brand") and "categories, description" in (some.note or "")
    fallback = choose_fields({"1": {"size": 3, "name": ""}, "2": {"text": "x", "name": "n", "tags": ["a"]}}, None)
    assert fallback.fields == ("name", "text", "tags") and fallback.source == "all string fields"
    assert choose_fields({"1": {"title": "a"}}, ["colour"]).fields == ("colour",)  # checked later by build_texts
    with pytest.raises(OptionError, match="no item has a text field"):
        choose_fields({"1": {"price": 2.0}}, None)
