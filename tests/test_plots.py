"""curves.png shows what a run did: loss on a log scale, accuracy, the learning rate, a marker per
epoch on integer epoch ticks, and the best validation epoch marked; a one-epoch run is a point,
not empty axes. The figure's own data is checked against the history it was drawn from."""

import pytest

from resnets.plots import curves_figure, plot_curves


def history(epochs: int) -> list[dict]:
    """Rows as metrics.csv holds them; the best val top-1 is at epoch 3 when there are 3 or more."""
    val = [0.40, 0.70, 0.90, 0.85, 0.88, 0.89][:epochs]
    return [
        dict(
            epoch=e,
            train_loss=2.0 / e**2,
            val_loss=2.2 / e,
            train_top1=min(1.0, 0.3 + 0.2 * e),
            val_top1=val[e - 1],
            lr=0.1 * (epochs - e + 1) / epochs,
        )
        for e in range(1, epochs + 1)
    ]


def curves(fig):
    """{panel title: {label: (x, y)}} of the plotted data lines."""
    out = {}
    for ax in fig.axes:
        lines = [ln for ln in ax.get_lines() if ln.get_linestyle() != "--"]
        out[ax.get_title().split(" (")[0]] = {
            ln.get_label(): (list(ln.get_xdata()), list(ln.get_ydata())) for ln in lines
        }
    return out


@pytest.mark.parametrize("epochs", [1, 6])
def test_curves_plot_loss_on_a_log_scale_accuracy_and_the_learning_rate_with_markers(epochs):
    rows = history(epochs)
    fig = curves_figure(rows, "resnet20 on digits")
    loss, accuracy, lr = fig.axes
    assert loss.get_yscale() == "log" and accuracy.get_yscale() == "linear"
    drawn = curves(fig)
    epochs_axis = [r["epoch"] for r in rows]
    assert drawn["loss"]["train"] == (epochs_axis, [r["train_loss"] for r in rows])
    assert drawn["loss"]["val"] == (epochs_axis, [r["val_loss"] for r in rows])
    assert drawn["accuracy"]["val"] == (epochs_axis, pytest.approx([100 * r["val_top1"] for r in rows]))
    assert drawn["learning rate"]["lr at the epoch's end"] == (epochs_axis, [r["lr"] for r in rows])
    for ax in fig.axes:
        data = [ln for ln in ax.get_lines() if ln.get_linestyle() != "--"]
        assert all(ln.get_marker() not in (None, "", "None") for ln in data)  # a point per epoch
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)
        assert ax.get_xlim()[0] < 1 and ax.get_xlim()[1] > epochs  # every point inside the axes


def test_the_best_validation_epoch_is_marked_on_every_panel_and_named():
    fig = curves_figure(history(6))
    for ax in fig.axes:
        marks = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
        assert len(marks) == 1 and list(marks[0].get_xdata()) == [3, 3]
    assert fig.axes[1].get_title() == "accuracy (best val 90.00%, epoch 3)"


def test_plot_curves_writes_a_png(tmp_path):
    plot_curves(tmp_path / "curves.png", history(1), "one epoch")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
