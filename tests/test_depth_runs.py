"""Every new config option of issue 10's models and tasks composes, trains a step and is probed,
through the one training loop (no branch on the model kind): model=mlp and its knobs, bnlstm,
between-layer norms and init schemes on the recurrent models, random_labels and the digits in
both layouts, with feedforward and recurrent models."""
import json
import math

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from seqlab.__main__ import CONF_DIR
from seqlab.train import RunInfo, train

TINY = ("steps=1", "eval_every=1", "batch_size=4", "model.hidden_size=4", "probe.every=1", "probe.batch_size=4",
        "probe.lyapunov_k=1", "probe.lyapunov_warmup=1", "probe.lyapunov_steps=0", "probe.plots=false", "logger=none", "progress=false")
FLAT = ("task=random_labels", "task.n_examples=12", "task.input_dim=3", "task.n_classes=3")

RUNS = {
    "mlp": ("model=mlp", *FLAT),
    "mlp-deep-residual": ("model=mlp", *FLAT, "model.num_layers=12", "model.residual=true"),
    "mlp-batchnorm": ("model=mlp", *FLAT, "model.layer.norm=batch"),
    "mlp-layernorm": ("model=mlp", *FLAT, "model.layer.norm=layer"),
    "mlp-between-batch": ("model=mlp", *FLAT, "model.between=batch"),
    "mlp-sigmoid-xavier": ("model=mlp", *FLAT, "model.layer.activation=sigmoid", "model.layer.init=xavier"),
    "mlp-kaiming-readout": ("model=mlp", *FLAT, "model.layer.init=kaiming", "model.readout_init=xavier"),
    "mlp-orthogonal-gain": ("model=mlp", *FLAT, "model.layer.init=orthogonal", "model.layer.gain=0.9",
                            "model.layer.activation=identity"),
    "mlp-digits": ("model=mlp", "task=digits"),
    "mlp-digits-sequential": ("model=mlp", "task=digits_sequential"),  # memoryless per step: it runs
    "rnn-random-labels": ("model=rnn", *FLAT),  # a flat task with a recurrent model: T = 1
    "lstm-digits-sequential": ("model=lstm", "task=digits_sequential"),
    "gru-digits-permuted": ("model=gru", "task=digits_permuted"),
    "bnlstm-digits-permuted": ("model=bnlstm", "task=digits_permuted", "model.num_layers=2"),
    "bnlstm-adding": ("model=bnlstm", "task=adding", "seq_len=6", "model.layer.init=orthogonal"),
    "rnn-between-batch": ("model=rnn", "task=adding", "seq_len=6", "model.num_layers=2", "model.between=batch"),
    "lstm-between-layer-xavier": ("model=lstm", "task=adding", "seq_len=6", "model.num_layers=2",
                                  "model.between=layer", "model.layer.init=xavier"),
    "gru-kaiming": ("model=gru", "task=delayed_recall", "seq_len=6", "model.layer.init=kaiming"),
    "indrnn-orthogonal": ("model=indrnn", "task=adding", "seq_len=6", "model.layer.init=orthogonal"),
    "lru-xavier": ("model=lru", "task=adding", "seq_len=6", "model.layer.init=xavier"),
    "exprnn-default-input": ("model=exprnn", "task=adding", "seq_len=6", "model.layer.input_init=default"),
}


@pytest.mark.parametrize("name", RUNS)
def test_option_composes_trains_a_step_and_is_probed(name, tmp_path):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*TINY, *RUNS[name]])
    s = train(cfg, RunInfo(run_dir=tmp_path, name=name))
    assert s["status"] == "finished" and math.isfinite(s["final_loss"])
    written = json.loads((tmp_path / "summary.json").read_text())
    with np.load(tmp_path / "probe.npz") as p:
        keys = [str(k) for k in p["curves"]]
        assert list(p["steps"]) == [0, 1]
        assert len(keys) >= cfg.model.num_layers
        for key in keys:
            g = p[f"mean_{key}"]  # (probes, lags)
            assert np.isfinite(g).all() and (g >= 0).all()
            assert g.shape[1] == int(p["loss_steps"].min()) + 1  # T = 1 tasks: the lag-0 column only
            if key.endswith(f"_l{cfg.model.num_layers - 1}"):  # the top layer always gets a gradient
                assert (g[:, 0] > 0).all()  # (a lower one can be 0: 4 ReLU units may all be off)
    assert written["probe"]["step"] == 1
