"""Pretraining objectives: GDES gradient flow, the saved discriminator embedding, the selected-position
MLM head, RTD labels, learning on a tiny repeating corpus, checkpoints that transformers loads, and
kill-free resume through the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from fastdeberta import DebertaConfig, DebertaForMaskedLM
from fastdeberta.pretraining.objectives import MaskingOptions, RTDModel, masked_lm_logits
from fastdeberta.pretraining.run import _auc

VOCAB = 60
CFG = dict(model_type="deberta-v2", vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
           intermediate_size=64, max_position_embeddings=64, relative_attention=True, position_buckets=16,
           pos_att_type="p2c|c2p", position_biased_input=False, norm_rel_ebd="layer_norm", share_att_key=True,
           type_vocab_size=0, pad_token_id=0, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
SPECIAL = (0, 1, 2, 3, VOCAB - 1)


def masking(**kw) -> MaskingOptions:
    return MaskingOptions(mask_token_id=VOCAB - 1, vocab_size=VOCAB, special_ids=SPECIAL,
                          **{"mask_ratio": 1.0, "random_ratio": 0.0, "probability": 0.3, **kw})


def batch(seed: int = 0, rows: int = 4, length: int = 12) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB - 1, (rows, length), generator=gen)
    ids[:, 0], ids[:, -1] = 1, 2
    mask = torch.ones_like(ids)
    ids[1, -3:], mask[1, -3:] = 0, 0
    return {"input_ids": ids, "attention_mask": mask}


def rtd_model(sharing: str = "gdes", seed: int = 0) -> RTDModel:
    torch.manual_seed(seed)
    return RTDModel(DebertaConfig.from_dict(CFG), generator_layers=1, embedding_sharing=sharing, rtd_lambda=50.0,
                    masking=masking())


def test_gdes_gradients_split_by_loss():
    """d(MLM)/d(delta) = 0 and d(RTD)/d(E_generator) = 0 under GDES; under "es" RTD reaches E_generator."""
    for sharing, rtd_reaches_generator in (("gdes", False), ("es", True)):
        model = rtd_model(sharing)
        out = model.step(batch(), torch.Generator().manual_seed(0))
        params = [model.generator_embeddings] + ([model.embedding_delta] if sharing == "gdes" else [])
        mlm = torch.autograd.grad(out["mlm_loss"], params, retain_graph=True, allow_unused=True)
        rtd = torch.autograd.grad(out["rtd_loss"], params, allow_unused=True)
        assert mlm[0] is not None and float(mlm[0].abs().max()) > 0        # MLM trains the generator table
        reached = rtd[0] is not None and float(rtd[0].abs().max()) > 0
        assert reached == rtd_reaches_generator, sharing
        if sharing == "gdes":
            assert mlm[1] is None or float(mlm[1].abs().max()) == 0.0       # MLM does not touch the delta
            assert float(rtd[1].abs().max()) > 0                            # RTD trains the delta


def test_generator_and_discriminator_gradients_are_clipped_each_by_its_own_norm():
    """As the original's two trainers: the generator's gradient norm is clipped alone, not scaled down by
    the discriminator's 50 x RTD gradient. Plain sharing ("es") keeps one joint norm."""
    from fastdeberta.training.loop import clipping_groups

    model = rtd_model("gdes")
    trainable = [p for p in model.parameters() if p.requires_grad]
    generator, rest = clipping_groups(model, trainable)
    assert {id(p) for p in generator} == {id(p) for p in model.generator.parameters() if p.requires_grad}
    assert {id(p) for p in rest} == {id(p) for p in trainable} - {id(p) for p in generator}
    assert any(p is model.embedding_delta for p in rest)

    out = model.step(batch(), torch.Generator().manual_seed(0))
    out["loss"].backward()

    def norm(group):
        return float(torch.sqrt(sum((p.grad.float() ** 2).sum() for p in group if p.grad is not None)))

    before = norm(generator), norm(rest)
    assert before[1] > 2 * before[0] > 0                     # the RTD side dominates a joint norm
    limit = before[0] / 2                                     # both groups above it
    for group in (generator, rest):
        torch.nn.utils.clip_grad_norm_(group, limit)
    assert norm(generator) == pytest.approx(limit, rel=1e-4)  # a joint clip: below limit / 2
    assert norm(rest) == pytest.approx(limit, rel=1e-4)

    shared = rtd_model("es")
    assert clipping_groups(shared, [p for p in shared.parameters() if p.requires_grad]) == \
        [[p for p in shared.parameters() if p.requires_grad]]


def test_the_training_loop_clips_the_rtd_groups_separately(tmp_path, monkeypatch):
    from fastdeberta.training import Trainer, TrainingArguments

    model = rtd_model("gdes")
    calls = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *args, **kwargs):
        params = list(params)
        calls.append({id(p) for p in params})
        return real(params, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    rows = [{"input_ids": ids} for ids in batch(rows=8)["input_ids"]]
    args = TrainingArguments(output_dir=tmp_path / "run", max_steps=1, batch_size=8, learning_rate=1e-3,
                             precision="fp32", progress=False)
    Trainer(model, args, rows, collate_fn=lambda ex: {"input_ids": torch.stack([e["input_ids"] for e in ex]),
                                                      "attention_mask": torch.ones(len(ex), 12, dtype=torch.long)},
            compute_loss=model.compute_loss, save_model=lambda m, path: None).train()
    generator = {id(p) for p in model.generator.parameters() if p.requires_grad}
    assert calls == [generator, {id(p) for p in model.parameters() if p.requires_grad} - generator]


def test_saved_discriminator_embedding_is_generator_plus_delta(tmp_path):
    from fastdeberta import from_pretrained

    model = rtd_model("gdes")
    with torch.no_grad():
        model.embedding_delta.normal_()
    expected = (model.generator_embeddings + model.embedding_delta).detach().clone()
    model.save(tmp_path)
    disc = from_pretrained(tmp_path / "discriminator", task="base")
    assert torch.equal(disc.embeddings.word_embeddings.weight, expected)
    gen = from_pretrained(tmp_path / "generator", task="masked-lm")
    assert gen.enhanced_mask_decoder
    assert torch.equal(gen.deberta.embeddings.word_embeddings.weight, model.generator_embeddings)
    assert (tmp_path / "discriminator" / "rtd_head.safetensors").is_file()


def test_saved_checkpoints_load_in_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    model = rtd_model("gdes").eval()
    model.save(tmp_path)
    inputs = batch()
    hf_disc = transformers.DebertaV2Model.from_pretrained(tmp_path / "discriminator").eval()
    with torch.no_grad():
        ours = model.export_discriminator()(**inputs).last_hidden_state
        theirs = hf_disc(**inputs).last_hidden_state
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    hf_gen, info = transformers.DebertaV2ForMaskedLM.from_pretrained(tmp_path / "generator",
                                                                     output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"], info


def test_masked_lm_logits_at_selected_positions_equal_the_full_head():
    torch.manual_seed(0)
    model = DebertaForMaskedLM(DebertaConfig.from_dict(CFG), head_layout="lm_predictions",
                               enhanced_mask_decoder=True).eval()
    inputs = batch()
    selected = torch.zeros_like(inputs["input_ids"], dtype=torch.bool)
    selected[0, 3], selected[2, 5], selected[3, 1] = True, True, True
    with torch.no_grad():
        full = model(**inputs).logits
        picked = masked_lm_logits(model, inputs["input_ids"], inputs["attention_mask"], selected)
    torch.testing.assert_close(picked, full[selected], atol=1e-5, rtol=1e-5)


def test_rtd_labels_count_a_sampled_original_as_original():
    model = rtd_model("gdes")
    original = batch()["input_ids"]
    selected = torch.zeros_like(original, dtype=torch.bool)
    selected[0, 2] = selected[0, 3] = True
    logits = torch.full((2, VOCAB), -1e4)
    logits[0, int(original[0, 2])] = 1e4        # the generator reproduces the original here
    logits[1, 7 if int(original[0, 3]) != 7 else 8] = 1e4
    replaced = model.replace_tokens(original, selected, logits, torch.Generator().manual_seed(0))
    assert int(replaced[0, 2]) == int(original[0, 2])
    assert (replaced != original).sum() == 1 and bool((replaced != original)[0, 3])


def test_tiny_rtd_model_learns_a_repeating_corpus():
    """Rows follow fixed cyclic patterns, so a masked token is predictable from its neighbours: within
    two hundred steps the generator's MLM loss must fall well below its start and the discriminator must
    beat the all-original baseline."""
    model = rtd_model("gdes")
    model.masking = masking(probability=0.2)
    rows = torch.arange(8)[:, None]
    ids = 5 + (torch.arange(16)[None, :] * (1 + rows % 3) + rows) % 40          # (8, 16)
    ids[:, 0], ids[:, -1] = 1, 2
    data = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    history = []
    for step in range(200):
        out = model.step(data, torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        history.append((float(out["mlm_loss"].detach()), float(out["rtd_accuracy"])))
    first = sum(h[0] for h in history[:5]) / 5
    last = sum(h[0] for h in history[-5:]) / 5
    assert last < 0.4 * first, (first, last)
    assert sum(h[1] for h in history[-5:]) / 5 > 0.9, history[-5:]


def test_auc_matches_the_pairwise_definition():
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8, 0.4])
    labels = torch.tensor([0, 0, 1, 1, 1])
    pairs = [(p, n) for p in range(5) for n in range(5) if labels[p] and not labels[n]]
    expected = sum(1.0 if scores[p] > scores[n] else 0.5 if scores[p] == scores[n] else 0.0
                   for p, n in pairs) / len(pairs)
    assert _auc(scores, labels) == pytest.approx(expected)


def test_bad_options_are_refused():
    config = DebertaConfig.from_dict(CFG)
    with pytest.raises(ValueError, match="embedding_sharing"):
        RTDModel(config, embedding_sharing="tied")
    with pytest.raises(ValueError, match="rtd_lambda"):
        RTDModel(config, rtd_lambda=-1)


def test_pretrain_cli_runs_and_resumes(tmp_path, capsys):
    """End to end from raw text with the CLI: tokenizer trained here, 4 steps, then --resume to 6."""
    from fastdeberta.cli.main import main
    from fastdeberta.pretraining.vocab import train_tokenizer

    words = ("the cat sat on a mat while the dog ran to the park and a bird sang in the old tree "
             "near the river where children play every day").split()
    gen = torch.Generator().manual_seed(0)
    docs = []
    for d in range(60):
        sentence = " ".join(words[int(i)] for i in torch.randint(len(words), (int(8 + d % 9),), generator=gen))
        docs.append(sentence.capitalize() + ".")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(docs) + "\n")
    train_tokenizer([corpus], tmp_path / "tok", vocab_size=60, exact_size=False)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({k: v for k, v in CFG.items() if k not in ("vocab_size", "pad_token_id")}))
    common = ["pretrain", "--tokenizer", str(tmp_path / "tok"), "--corpus", str(corpus), "--config", str(config),
              "--output", str(tmp_path / "run"), "--seq-length", "16", "--batch-size", "4", "--save-every", "2",
              "--eval-every", "2", "--valid-fraction", "0.2", "--precision", "fp32", "--no-progress", "--json"]
    assert main(common + ["--steps", "4"]) == 0
    assert "packing" not in capsys.readouterr().err          # --no-progress silences the packing bar too
    assert main(common + ["--steps", "6", "--resume"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "eval_mlm_accuracy" in r] == [2, 4, 6]
    assert {"eval_rtd_accuracy", "eval_rtd_auc"} <= set(rows[-1])
    assert (tmp_path / "run" / "generator" / "config.json").is_file()
    assert (tmp_path / "run" / "discriminator" / "model.safetensors").is_file()


def test_load_pretrained_restores_what_save_wrote(tmp_path):
    model = rtd_model("gdes", seed=1)
    with torch.no_grad():
        model.embedding_delta.normal_()
    model.save(tmp_path)
    fresh = rtd_model("gdes", seed=2)
    fresh.load_pretrained(tmp_path)
    for name, tensor in model.generator.state_dict().items():
        assert torch.equal(fresh.generator.state_dict()[name], tensor), name
    assert torch.equal(fresh.rtd_head.classifier.weight, model.rtd_head.classifier.weight)
    torch.testing.assert_close(fresh.discriminator_embedding_matrix(), model.discriminator_embedding_matrix(),
                               atol=1e-6, rtol=0)
    inputs = batch()
    with torch.no_grad():
        assert torch.allclose(fresh.discriminate(**inputs), model.discriminate(**inputs), atol=1e-5)


PRETRAIN_SCRIPT = """
import sys, time, torch
torch.set_num_threads(1)
from fastdeberta.cli.main import main
from fastdeberta.pretraining.objectives import RTDModel
slow = RTDModel.compute_loss
def compute_loss(self, model, batch, generator):       # slowed down so the test can kill it mid-run
    time.sleep(float(sys.argv[2]))
    return slow(self, model, batch, generator)
RTDModel.compute_loss = compute_loss
sys.exit(main(sys.argv[3:]))
"""


def test_pretraining_killed_with_sigkill_resumes_to_the_same_weights(tmp_path):
    """RTD + GDES pretraining through the CLI, killed with SIGKILL after a checkpoint and resumed,
    ends with bitwise the same training state as an uninterrupted run (dropout and masking included)."""
    import signal
    import subprocess
    import sys
    import time

    from safetensors.torch import load_file

    from fastdeberta.pretraining.vocab import train_tokenizer

    words = "the cat sat on a mat while the dog ran to the park and a bird sang in the old tree".split()
    gen = torch.Generator().manual_seed(0)
    docs = [" ".join(words[int(i)] for i in torch.randint(len(words), (12,), generator=gen)) + "." for _ in range(80)]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(docs) + "\n")
    train_tokenizer([corpus], tmp_path / "tok", vocab_size=50, exact_size=False)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**{k: v for k, v in CFG.items() if k not in ("vocab_size", "pad_token_id")},
                                  "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}))
    script = tmp_path / "run.py"
    script.write_text(PRETRAIN_SCRIPT)

    def command(out, delay, *extra):
        return [sys.executable, str(script), "", str(delay), "pretrain", "--tokenizer", str(tmp_path / "tok"),
                "--corpus", str(corpus), "--config", str(config), "--output", str(out), "--seq-length", "16",
                "--batch-size", "4", "--steps", "16", "--save-every", "4", "--eval-every", "8",
                "--valid-fraction", "0.1", "--precision", "fp32", "--no-progress", *extra]

    straight = subprocess.run(command(tmp_path / "a", 0.0), capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr[-2000:]
    # the same run, killed once its step-8 checkpoint exists, then resumed
    killed = tmp_path / "b"
    proc = subprocess.Popen(command(killed, 0.1), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (killed / "checkpoint-8" / "trainer_state.json").is_file():
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()[-2000:]}"
        assert time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (killed / "checkpoint-16").exists()
    resumed = subprocess.run(command(killed, 0.0, "--resume"), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = load_file(tmp_path / "a" / "checkpoint-16" / "state.safetensors")
    b = load_file(killed / "checkpoint-16" / "state.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert "embedding_delta" in a


def test_sample_categorical_draws_from_the_softmax():
    from fastdeberta.pretraining.objectives import sample_categorical

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2, 0.0], [0.0, 0.0, 1.0, 0.0]]).clamp_min(1e-30))
    rows = logits.repeat(20000, 1)                                             # 20000 draws of each row
    ids = sample_categorical(rows, torch.Generator().manual_seed(0)).view(20000, 2)
    counts = torch.bincount(ids[:, 0], minlength=4).double() / 20000
    torch.testing.assert_close(counts, torch.tensor([0.5, 0.3, 0.2, 0.0], dtype=torch.float64), atol=0.015, rtol=0)
    assert bool((ids[:, 1] == 2).all())                                        # a one-hot row always gives its id
    again = sample_categorical(rows, torch.Generator().manual_seed(0)).view(20000, 2)
    assert torch.equal(ids, again)                                             # reproducible from the generator


def test_pretraining_dropout_override_keeps_the_config_rates_in_checkpoints(tmp_path, monkeypatch, capsys):
    """--dropout sets every dropout module's rate for the run (0: train-mode passes become deterministic)
    while the saved config.json files keep the config's rates, the ones fine-tuning starts from."""
    from fastdeberta.cli.main import main
    from fastdeberta.pretraining import run as run_module
    from fastdeberta.pretraining.run import set_dropout
    from fastdeberta.pretraining.vocab import train_tokenizer

    cfg = {**CFG, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}
    torch.manual_seed(0)
    model = RTDModel(DebertaConfig.from_dict(cfg), generator_layers=1, masking=masking()).train()
    data = batch()
    with torch.no_grad():
        noisy = [model.generator(**data).logits for _ in range(2)]
    assert not torch.equal(*noisy)                                   # dropout at 0.1 is on
    assert set_dropout(model, 0.0) >= 6
    with torch.no_grad():
        quiet = [model.generator(**data).logits for _ in range(2)]
    torch.testing.assert_close(quiet[0], quiet[1], rtol=0, atol=0)
    model.save(tmp_path / "saved")
    for part in ("generator", "discriminator"):
        saved = json.loads((tmp_path / "saved" / part / "config.json").read_text())
        assert saved["hidden_dropout_prob"] == 0.1 and saved["attention_probs_dropout_prob"] == 0.1
    with pytest.raises(ValueError, match="dropout must be in"):
        set_dropout(model, 1.0)

    # the CLI option reaches the model the Trainer trains, and a bad value is refused before any work
    seen = []

    class Spy(run_module.Trainer):
        def __init__(self, model, *args, **kwargs):
            seen.append({m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)})
            super().__init__(model, *args, **kwargs)

    monkeypatch.setattr(run_module, "Trainer", Spy)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(f"The cat number {i} sat on the mat near the dog." for i in range(40)) + "\n")
    train_tokenizer([corpus], tmp_path / "tok", vocab_size=50, exact_size=False)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({k: v for k, v in cfg.items() if k not in ("vocab_size", "pad_token_id")}))
    common = ["pretrain", "--tokenizer", str(tmp_path / "tok"), "--corpus", str(corpus), "--config", str(config),
              "--output", str(tmp_path / "run"), "--seq-length", "16", "--batch-size", "4", "--steps", "1",
              "--valid-fraction", "0.2", "--precision", "fp32", "--no-progress", "--json"]
    assert main(common + ["--dropout", "0"]) == 0
    assert seen == [{0.0}]
    saved = json.loads((tmp_path / "run" / "generator" / "config.json").read_text())
    assert saved["hidden_dropout_prob"] == 0.1
    capsys.readouterr()
    assert main(common + ["--dropout", "1.5", "--output", str(tmp_path / "run2")]) != 0
    assert "dropout must be in [0, 1), got 1.5" in capsys.readouterr().err
    assert not (tmp_path / "run2").exists()
