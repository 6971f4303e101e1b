"""The probe's figures: what they show (read back from the matplotlib figures before saving)."""
import numpy as np
import pytest
import torch

from seqlab.models import RNNLayer, SequenceModel
from seqlab.probe import ProbeHistory, ProbeSettings, probe
from seqlab.probe import plots
from seqlab.tasks import Adding


@pytest.fixture
def figures(monkeypatch):
    """Every figure the plot functions finish, by file name, instead of closing it."""
    seen = {}

    def keep(plt, fig, path, title, note=""):
        fig.suptitle(title + (f"\n{note}" if note else ""))
        seen[str(path).rsplit("/", 1)[-1]] = fig
        fig.savefig(path)
        return path

    monkeypatch.setattr(plots, "_finish", keep)
    return seen


def history_of(n_probes, layers=3, seq_len=30, steps_apart=10, underflow=False):
    task = Adding(seq_len=seq_len)
    torch.manual_seed(0)
    model = SequenceModel(RNNLayer, task.input_size, task.output_size, hidden_size=4, num_layers=layers)
    settings = ProbeSettings(batch_size=4, lyapunov_k=0)
    result = probe(model, task, settings.make_batch(task), settings)
    if underflow:
        for key in result.curves.keys:
            result.curves.mean[key][-5:] = 0.0
    history = ProbeHistory(task.lag)
    for i in range(n_probes):
        history.append(i * steps_apart, result)
    return history


def test_curves_show_a_few_probes_coloured_by_step_raw_and_normalized(tmp_path, figures):
    history = history_of(40, layers=6)
    plots.plot_curves(history, tmp_path / plots.CURVES_PNG, plots.figure_title("adding", "rnn", 30, 6))
    fig = figures[plots.CURVES_PNG]
    assert fig._suptitle.get_text().startswith("adding, rnn x 6 layers, T=30\n8 of 40 probes")
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 2 * 4  # raw and normalized rows, 4 of 6 layers
    assert {ax.get_title() for ax in panels if ax.get_title()} == {"h, layer 0", "h, layer 2", "h, layer 3", "h, layer 5"}
    for ax in panels:
        assert len(ax.get_lines()) == 8 + 1  # 8 probes + the task's lag
    normalized = [ax for ax in panels if ax.get_ylabel() == "g(k) / g(0)"]
    assert normalized and all(ax.get_lines()[0].get_ydata()[0] == pytest.approx(1.0) for ax in normalized)
    assert any(ax.get_label() == "<colorbar>" and "training step" in ax.get_ylabel() for ax in fig.axes)


def test_heatmap_starts_at_the_first_probe_and_explains_underflow(tmp_path, figures):
    history = history_of(5, layers=1, underflow=True)
    plots.plot_heatmap(history, tmp_path / plots.HEATMAP_PNG, "adding, rnn, T=30")
    ax = figures[plots.HEATMAP_PNG].axes[0]
    assert ax.get_xlim() == (0.0, 40.0)
    mesh = ax.collections[0]
    assert mesh.get_coordinates()[0, 0, 0] == 0.0  # the first cell starts at step 0, not at -5
    fig = figures[plots.HEATMAP_PNG]
    assert ax.get_legend() is None  # the legend sits under the panels, never on the data
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert plots.UNDERFLOW_LABEL in legend and "5 probes taken (cell: to the midpoints)" in legend
    marks = [ln for ln in ax.get_lines() if ln.get_marker() == "v"]  # where the probes were taken
    assert len(marks) == 1 and list(marks[0].get_xdata()) == [0.0, 10.0, 20.0, 30.0, 40.0]
    assert [t for t in ax.get_xticks()] == [0.0, 10.0, 20.0, 30.0, 40.0]
    one = history_of(1, layers=1)  # a single probe: one cell centred on its step, one integer tick
    plots.plot_heatmap(one, tmp_path / plots.HEATMAP_PNG, "")
    ax = figures[plots.HEATMAP_PNG].axes[0]
    assert ax.get_xlim() == (-0.5, 0.5) and list(ax.get_xticks()) == [0.0]
    no_underflow = history_of(2, layers=1)
    plots.plot_heatmap(no_underflow, tmp_path / plots.HEATMAP_PNG, "")
    legend = [t.get_text() for t in figures[plots.HEATMAP_PNG].legends[0].get_texts()]
    assert plots.UNDERFLOW_LABEL not in legend
    many = history_of(41, layers=1)  # 41 probes: thin ticks, not triangles merging into a bar
    plots.plot_heatmap(many, tmp_path / plots.HEATMAP_PNG, "")
    marks = [ln for ln in figures[plots.HEATMAP_PNG].axes[0].get_lines() if ln.get_marker() in ("v", "|")]
    assert len(marks) == 1 and marks[0].get_marker() == "|" and len(marks[0].get_xdata()) == 41


def test_step_edges_clip_to_the_trained_span():
    np.testing.assert_array_equal(plots._step_edges(np.array([0.0, 250, 500, 600])), [0, 125, 375, 550, 600])
    np.testing.assert_array_equal(plots._step_edges(np.array([800.0])), [799.5, 800.5])


def test_depth_and_grid_figures_only_for_stacks(tmp_path, figures):
    one = history_of(2, layers=1)
    assert plots.plot_depth(one, tmp_path / "d.png") is None and plots.plot_grid(one, tmp_path / "g.png") is None
    stack = history_of(3, layers=3)
    paths = plots.write_plots(stack, tmp_path, "adding, rnn x 3 layers, T=30")
    assert [p.name for p in paths] == [plots.CURVES_PNG, plots.HEATMAP_PNG, plots.DEPTH_PNG, plots.GRID_PNG]
    depth = figures[plots.DEPTH_PNG].axes
    lag0 = depth[0].get_lines()[0].get_ydata()
    np.testing.assert_allclose(lag0, stack.depth_curve("h", "lag0")[0])
    assert depth[2].get_xticklabels()[-1].get_text() == "readout"
