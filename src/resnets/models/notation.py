"""Read and write the paper's Table-1 notation, e.g. "[1x1,64; 3x3,64; 1x1,256]x3, [...]x4, ...".

Each bracket is one block: a kernel and filter count per conv, in order; the number after the
bracket is how many times the block repeats in that stage. A grouped 3x3 may carry ", C=32"
(ResNeXt, Xie et al. 2017, Table 1). Errors name the column and the token that broke the rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from resnets.errors import SpecError
from resnets.models.spec import ResNetSpec

_CHUNK = re.compile(r"[\[\];,]|[^\s\[\];,]+")
_KINDS = (
    ("punct", re.compile(r"[\[\];,]")),
    ("kernel", re.compile(r"\d+[x×]\d+")),
    ("groups", re.compile(r"[Cc]=\d+")),
    ("int", re.compile(r"\d+")),
    ("times", re.compile(r"[xX×*]\d*")),
)


class NotationError(SpecError):
    """Malformed Table-1 notation; `column` is 1-based, `token` the text found there."""

    def __init__(self, text: str, column: int, token: str, expected: str) -> None:
        found = repr(token) if token else "the end"
        super().__init__(
            f"bad Table-1 notation at column {column}: expected {expected}, found {found} in {text!r}"
        )
        self.column, self.token, self.expected = column, token, expected


@dataclass(frozen=True)
class Conv:
    kernel: int
    filters: int
    groups: int = 1


@dataclass(frozen=True)
class Stage:
    convs: tuple[Conv, ...]
    repeats: int


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    column: int


def _tokenize(text: str) -> list[_Tok]:
    tokens = []
    for match in _CHUNK.finditer(text):
        chunk = match.group()
        kind = next((k for k, rx in _KINDS if rx.fullmatch(chunk)), "other")
        tokens.append(_Tok(kind, chunk, match.start() + 1))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text, self.tokens, self.i = text, _tokenize(text), 0

    def peek(self) -> _Tok | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def fail(self, expected: str) -> NotationError:
        tok = self.peek()
        column = tok.column if tok else len(self.text.rstrip()) + 1
        return NotationError(self.text, column, tok.text if tok else "", expected)

    def take(self, kind: str, text: str | None = None, expected: str = "") -> _Tok:
        tok = self.peek()
        if tok is None or tok.kind != kind or (text is not None and tok.text.lower() != text):
            raise self.fail(expected or repr(text))
        self.i += 1
        return tok

    def stages(self) -> list[Stage]:
        if self.peek() is None:
            raise self.fail("a stage such as '[3x3,64; 3x3,64]x2'")
        stages = [self.stage()]
        while self.peek() is not None:
            self.take("punct", ",", "',' between stages")
            stages.append(self.stage())
        return stages

    def stage(self) -> Stage:
        self.take("punct", "[", "'[' opening a block")
        convs = [self.conv()]
        while (tok := self.peek()) is not None and tok.text == ";":
            self.i += 1
            convs.append(self.conv())
        self.take("punct", "]", "';' or ']' after a conv")
        times = self.take("times", expected="'x' and a repeat count after ']'")
        count = times if times.text[1:] else self.take("int", expected="a repeat count")
        return Stage(tuple(convs), self._repeats(count, count.text.lstrip("xX×*")))

    def _repeats(self, tok: _Tok, digits: str) -> int:
        value = int(digits)
        if value < 1:
            raise NotationError(self.text, tok.column, tok.text, "a repeat count >= 1")
        return value

    def conv(self) -> Conv:
        tok = self.take("kernel", expected="a kernel size like '3x3'")
        k1, k2 = (int(v) for v in re.split(r"\s*[x×]\s*", tok.text))
        if k1 != k2 or k1 not in (1, 3):
            raise NotationError(self.text, tok.column, tok.text, "a 1x1 or 3x3 kernel")
        self.take("punct", ",", "',' between kernel and filters")
        filters = self.take("int", expected="a filter count")
        if int(filters.text) < 1:
            raise NotationError(self.text, filters.column, filters.text, "a filter count >= 1")
        groups = 1
        nxt = self.tokens[self.i + 1] if self.i + 1 < len(self.tokens) else None
        if (tok := self.peek()) is not None and tok.text == "," and nxt and nxt.kind == "groups":
            self.i += 2
            groups = int(nxt.text.split("=")[1])
            if groups < 1 or int(filters.text) % groups:
                raise NotationError(
                    self.text, nxt.column, nxt.text, f"C >= 1 dividing {filters.text} filters"
                )
        return Conv(k1, int(filters.text), groups)


def parse_notation(text: str) -> list[Stage]:
    """Parse stages of Table-1 notation; raise NotationError pointing at the first bad token."""
    return _Parser(text).stages()


def spec_from_notation(text: str) -> ResNetSpec:
    """Build a spec: [3x3,w; 3x3,w] stages give basic blocks, [1x1,w; 3x3,w; 1x1,4w] bottlenecks.

    Four stages get the ImageNet stem, three the CIFAR stem (paper sec. 3.4 and 4.2). Raises
    NotationError (column and token) for text that does not parse, SpecError for blocks that
    mix types or whose widths do not scale as a ResNet's do.
    """
    stages = parse_notation(text)
    kinds = {_block_kind(text, s) for s in stages}
    if len(kinds) > 1:
        raise SpecError(f"every stage must use the same block type, got {sorted(kinds)} in {text!r}")
    block = kinds.pop()
    widths, groups, per_group = [], set(), set()
    for stage in stages:
        if block == "basic":
            widths.append(stage.convs[0].filters)
            continue
        reduce, middle, expand = stage.convs
        if expand.filters % 4:
            raise SpecError(f"a bottleneck's last 1x1 must output 4x the stage width, got {expand.filters}")
        width = expand.filters // 4
        widths.append(width)
        groups.add(middle.groups)
        per_group.add(middle.filters * 64 / (middle.groups * width))
    extra = {}
    if block == "bottleneck":
        if len(groups) > 1 or len(per_group) > 1:
            raise SpecError(f"the 3x3 width must scale with the stage width in every stage of {text!r}")
        g, pg = groups.pop(), per_group.pop()
        if pg != int(pg):
            raise SpecError(f"the 3x3 width does not divide into {g} groups evenly in {text!r}")
        extra = {"groups": g, "width_per_group": int(pg)}
    stem = "cifar" if len(stages) == 3 else "imagenet"
    return ResNetSpec(
        block=block,
        depths=tuple(s.repeats for s in stages),
        widths=tuple(widths),
        stem=stem,
        shortcut="A" if stem == "cifar" else "B",
        num_classes=10 if stem == "cifar" else 1000,
        **extra,
    )


def _block_kind(text: str, stage: Stage) -> str:
    shape = tuple(c.kernel for c in stage.convs)
    filters = [c.filters for c in stage.convs]
    if shape == (3, 3) and filters[0] == filters[1] and stage.convs[0].groups == 1:
        return "basic"
    if shape == (1, 3, 1) and filters[0] == filters[1] and stage.convs[0].groups == 1:
        return "bottleneck"
    raise SpecError(
        f"a block must be [3x3,w; 3x3,w] (basic) or [1x1,w; 3x3,w; 1x1,4w] (bottleneck), "
        f"got {format_block(stage)} in {text!r}"
    )


def format_block(stage: Stage) -> str:
    """One stage as Table 1 writes it: "[1x1, 64; 3x3, 64; 1x1, 256] x 3"."""
    parts = [
        f"{c.kernel}x{c.kernel}, {c.filters}" + (f", C={c.groups}" if c.groups > 1 else "")
        for c in stage.convs
    ]
    return f"[{'; '.join(parts)}] x {stage.repeats}"


def spec_stages(spec: ResNetSpec) -> list[Stage]:
    """The stages of a spec as Table-1 blocks (after the width multiplier)."""
    stages = []
    for depth, width, inner, out in zip(spec.depths, spec.stage_widths, spec.inner_widths, spec.out_channels):
        if spec.block == "basic":
            convs = (Conv(3, width), Conv(3, width))
        else:
            convs = (Conv(1, inner), Conv(3, inner, spec.groups), Conv(1, out))
        stages.append(Stage(convs, depth))
    return stages


def format_stem(spec: ResNetSpec) -> str:
    """The stem's row in Table-1 notation: "7x7, 64, stride 2" (sec. 3.4), "3x3, 16" (sec. 4.2),
    or the deep stem's three 3x3 convs (ResNet-C/D, Bag of Tricks sec. 4.1)."""
    out = spec.stem_channels
    if spec.stem == "cifar":
        return f"3x3, {out}"
    if spec.stem == "imagenet":
        return f"7x7, {out}, stride 2"
    mid = spec.deep_stem_width
    return f"3x3, {mid}, stride 2; 3x3, {mid}; 3x3, {out}"


def format_notation(spec: ResNetSpec) -> str:
    """The whole network body in Table-1 notation (He et al. 2015, Table 1; ResNeXt's "C=" of
    Xie et al. 2017, Table 1); parse_notation reads it back."""
    return ", ".join(format_block(s) for s in spec_stages(spec))
