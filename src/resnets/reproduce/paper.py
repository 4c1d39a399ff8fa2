"""What the paper reports for its CIFAR-10 experiments (He et al. 2015, sec. 4.2), as data: the
numbers our reports put next to ours, and the observations each figure is drawn to show.

Table 6, "Classification error on the CIFAR-10 test set. All methods are with data augmentation.
For ResNet-110, we run it 5 times and show 'best (mean±std)'".
"""

from __future__ import annotations

SOURCE = "He et al. 2015, Deep Residual Learning for Image Recognition (arXiv:1512.03385v1)"

# depth -> (parameters as printed in Table 6, test error % as printed)
TABLE6: dict[int, tuple[str, float]] = {
    20: ("0.27M", 8.75),
    32: ("0.46M", 7.51),
    44: ("0.66M", 7.17),
    56: ("0.85M", 6.97),
    110: ("1.7M", 6.43),
    1202: ("19.4M", 7.93),
}
# ResNet-110 was run 5 times: best 6.43, mean 6.61 +- 0.16 (Table 6).
TABLE6_110_MEAN_STD = (6.61, 0.16)

# What each figure shows, in the paper's words (sec. 4.2 and the captions).
FIG1 = (
    "Fig. 1: training error (left) and test error (right) on CIFAR-10 with 20-layer and 56-layer "
    "plain networks. The deeper network has higher training error, and thus test error."
)
FIG6 = (
    "Fig. 6: training on CIFAR-10; dashed lines denote training error, bold lines testing error. "
    "Left: plain networks (the deeper plain nets have higher training error; plain-110's error is "
    "above 60% and not drawn). Middle: ResNets (they overcome the optimization difficulty and "
    "gain accuracy as the depth increases)."
)
FIG7 = (
    "Fig. 7: standard deviations of the layer responses on CIFAR-10, the outputs of each 3x3 "
    "layer after BN and before the nonlinearity, in their original order (top) and sorted in "
    "descending order (bottom). ResNets have generally smaller responses than their plain "
    "counterparts, and the deeper ResNet has smaller magnitudes of responses."
)
