"""python -m seqlab.claims: every claim has its presets, its numbers are the formulas they say, bad names fail."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from seqlab import claims
from seqlab.report.runs import Run, Setting

EXPERIMENTS = Path(__file__).resolve().parents[1] / "conf" / "experiment"


def test_every_claim_has_its_presets_and_every_claim_preset_a_claim():
    presets = {p for c in claims.CLAIMS.values() for p in c.presets()}
    on_disk = {p.stem for p in EXPERIMENTS.glob("claim_*.yaml")}
    assert presets == on_disk
    for c in claims.CLAIMS.values():
        assert c.depth or c.time
        for p in c.presets():
            assert f"python -m seqlab.claims {c.name}" in (EXPERIMENTS / f"{p}.yaml").read_text()


def test_listing_and_an_unknown_claim(capsys):
    assert claims.main([]) == 0
    assert "sigmoid_bound" in capsys.readouterr().out
    assert claims.main(["sigmoid_bund"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("seqlab: error: claim=sigmoid_bund: unknown claim; allowed:")


def test_set_passes_overrides_to_every_sweep_and_a_bad_one_is_one_line(tmp_path, monkeypatch, capsys):
    seen = []

    class Done:
        returncode, stdout = 0, ""

    def fake(cmd, **kw):  # the sweep leaves its directory, here empty
        seen.append(cmd)
        Path(cmd[-1].split("=", 1)[1]).mkdir(parents=True)
        return Done()

    monkeypatch.setattr(claims.subprocess, "run", fake)
    assert claims.main(["decay", "--root", str(tmp_path), "--set", "probe.lyapunov_k=0", "logger=none"]) == 0
    assert len(seen) == 2  # the depth and the time preset
    for cmd in seen:  # after the preset (so they win), before the sweep dir the command sets
        i = cmd.index("probe.lyapunov_k=0")
        assert cmd[i - 1].startswith("+experiment=claim_decay_") and cmd[i + 1] == "logger=none"
        assert cmd[-1].startswith("hydra.sweep.dir=")
    capsys.readouterr()
    assert claims.main(["decay", "--root", str(tmp_path), "--set", "lyapunov"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("seqlab: error: --set lyapunov: each must be KEY=VALUE")


def _run(seed, probe=None, metrics=(), status="finished") -> Run:
    return Run(path=Path(f"/r{seed}"), status=status, config={"seed": seed}, overrides=[], summary={},
               metrics=list(metrics), probe=probe)


def test_depth_numbers_and_curves_are_the_geometric_mean_relative_to_the_last_layer():
    # two seeds: g(l) = a_s * r_s^(L-1-l); the geometric mean of g/g(L-1) is (r0 r1)^((L-1-l)/2)
    L = 5
    probes = []
    for a, r in ((2.0, 0.25), (3.0, 0.5)):
        g = a * r ** (L - 1 - np.arange(L))
        probes.append({"steps": np.array([0]), "depth_h_lag0": g[None], "depth_gain_h_lag0": np.array([r]),
                       "depth_attenuation_decades_h_lag0": np.array([-np.log10(g[0] / g[-1])])})
    s = Setting(items={}, label="x", runs=[_run(i, p) for i, p in enumerate(probes)])
    g = claims._geo_mean([claims.depth_curve(r) for r in s.runs], ref_index=-1)
    np.testing.assert_allclose(g, (0.25 * 0.5) ** ((L - 1 - np.arange(L)) / 2), rtol=1e-12)
    n = claims.init_numbers(s, "depth", "h_l0")
    assert n["gain"] == pytest.approx(0.375) and n["seeds"] == 2
    assert n["decades"] == pytest.approx((4 * np.log10(4) + 4 * np.log10(2)) / 2)


def test_the_seed_mean_stops_where_a_seed_underflowed():
    a, b = 0.5 ** np.arange(60.0), 0.5 ** np.arange(60.0)
    b[40:] = 0.0  # one seed's gradient underflowed from lag 40; the other goes on
    g = claims._geo_mean([a, b], ref_index=0)
    assert np.isfinite(g[:40]).all() and np.isnan(g[40:]).all()  # not the other seed alone: a kink up
    assert g[39] == pytest.approx(0.5 ** 39)


def test_time_curve_prefers_the_asked_curve_and_falls_back_to_h():
    p = {"steps": np.array([0, 10]), "curves": np.array(["h_l0"]), "mean_h_l0": np.array([[1.0, 0.5], [1.0, 0.9]])}
    key, g = claims.time_curve(_run(0, p), "c_l0")
    assert key == "h_l0" and g.tolist() == [1.0, 0.5]  # the step-0 probe, not the last one


def test_training_numbers_first_over_last_layer_and_divergence():
    rows = [{"step": s, "eval/loss_over_baseline": 1.0 / s, "train/grad_norm/l0": 1e-3 * s, "train/grad_norm/l1": 1e-2,
             "train/grad_norm/l2": 1.0 * s, "train/grad_norm/readout": 5.0, "train/update_ratio/l0": 0.01,
             "train/update_ratio/l1": 0.01, "train/update_ratio/l2": 0.02} for s in (1, 2, 3)]
    s = Setting(items={}, label="x", runs=[_run(0, metrics=rows), _run(1, metrics=rows[:1], status="diverged")])
    n = claims.training_numbers(s)
    assert n["first_over_last_grad"] == pytest.approx(1e-3)  # l0 / l2, the last hidden layer (not the readout)
    assert n["first_over_last_update"] == pytest.approx(0.5)
    assert n["diverged"] == 1 and n["runs"] == 2
    assert n["loss_over_baseline"] == pytest.approx((1 / 3 + 1.0) / 2)


def test_figures_are_written(tmp_path):
    p = {"steps": np.array([0]), "curves": np.array(["h_l0"]), "mean_h_l0": np.array([[1.0, 0.1, 0.01]]),
         "gain_h_l0": np.array([0.1]), "attenuation_decades_h_l0": np.array([2.0]),
         "depth_h_lag0": np.array([[0.01, 0.1, 1.0]]), "depth_gain_h_lag0": np.array([0.1]),
         "depth_attenuation_decades_h_lag0": np.array([2.0])}
    rows = [{"step": s, "eval/loss_over_baseline": 1.0, "train/grad_norm/l0": 0.1, "train/grad_norm/l1": 1.0,
             "train/update_ratio/l0": 0.01, "train/update_ratio/l1": 0.01} for s in (1, 2)]
    sweeps = {"depth": [Setting(items={}, label="a", runs=[_run(0, p, rows)])], "time": [Setting(items={}, label="b", runs=[_run(0, p, rows)])]}
    for kind, plot in (("init", claims.plot_init), ("training", claims.plot_training)):
        path = plot(claims.Claim("t", "a statement", kind), sweeps, tmp_path / f"{kind}.png")
        assert path.stat().st_size > 10_000
    assert math.isnan(claims.init_numbers(Setting(items={}, label="e", runs=[_run(0)]), "depth", "h_l0")["gain"])


def test_init_numbers_put_the_theory_beside_the_measured_gain_or_its_reason():
    def run(seed, gain, theory):
        probe = {"steps": np.array([0]), "depth_gain_h_lag0": np.array([gain]),
                 "depth_attenuation_decades_h_lag0": np.array([1.0])}
        r = _run(seed, probe)
        r.summary["theory"] = {"depth": theory}
        return r

    s = Setting(items={}, label="x", runs=[run(0, 0.6, {"gain": 0.5}), run(1, 0.5, {"gain": 0.5})])
    n = claims.init_numbers(s, "depth", "h_l0")
    assert n["theory"] == pytest.approx(0.5) and n["theory_gap"] == pytest.approx(0.55 / 0.5 - 1)
    assert claims.theory_text(n) == "; theory 0.5, gap +10.0%"
    s = Setting(items={}, label="x", runs=[run(0, 0.6, {"absent": "LSTM: not here"})])
    assert claims.theory_text(claims.init_numbers(s, "depth", "h_l0")) == "; theory absent (LSTM: not here)"
    assert claims.theory_text(claims.init_numbers(Setting(items={}, label="x", runs=[_run(0)]), "depth", "h_l0")) == ""


def test_the_init_figure_draws_the_predicted_curve_dashed(tmp_path):
    L = 4
    probe = {"steps": np.array([0]), "depth_h_lag0": (0.5 ** (L - 1 - np.arange(L)))[None],
             "depth_gain_h_lag0": np.array([0.5]), "depth_attenuation_decades_h_lag0": np.array([0.9])}
    r = _run(0, probe)
    r.summary["theory"] = {"depth": {"gain": 0.5, "curve": [0.125, 0.25, 0.5, 1.0]}}
    s = Setting(items={}, label="x", runs=[r])
    assert claims.theory_curve(s, "depth").tolist() == [0.125, 0.25, 0.5, 1.0]
    assert claims.theory_curve(s, "time") is None
    claim = claims.CLAIMS["decay"]
    assert claims.plot_init(claim, {"depth": [s]}, tmp_path / "c.png").stat().st_size > 0
