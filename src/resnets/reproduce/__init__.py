"""Reproducing the paper's CIFAR-10 experiments (He et al. 2015, sec. 4.2): Table 6, Fig. 1, 6
and 7, each in one call (`reproduce`) that trains what it needs with the paper's recipe, reuses
finished runs, and writes a report; and the layer responses of Fig. 7 for any network
(`analyze_responses`)."""

from resnets.reproduce.pipeline import Event, reproduce
from resnets.reproduce.plan import EXPERIMENTS, SCALES, Experiment, Scale
from resnets.reproduce.report import Report
from resnets.reproduce.responses import Responses, analyze_responses

__all__ = [
    "EXPERIMENTS",
    "SCALES",
    "Event",
    "Experiment",
    "Report",
    "Responses",
    "Scale",
    "analyze_responses",
    "reproduce",
]
