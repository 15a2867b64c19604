"""Runs the ONNX package's own backend node test cases for the operators
paskdnn.load_onnx maps, through load_onnx and graph.Runner on the CPU, and
writes the results as one table in docs/onnx.md (between the markers
``<!-- node-cases:begin -->`` and ``<!-- node-cases:end -->``).

    python tools/onnx_node_cases.py            # print the table and update docs/onnx.md
    python tools/onnx_node_cases.py --check    # print only

Recent onnx wheels no longer ship the cases' .pb files; onnx.backend.test.case.node
builds the same models and data in memory. A case's graph inputs after the
first are its weights: they become initializers holding the case's data (paskdnn
takes weights as constants). Each case then passes (fp32, every output element
within the case's own rtol/atol, or 1e-4 of the output's largest magnitude),
is skipped with the UnsupportedError load_onnx raised (before any device work), or
fails (a wrong result or another error: a bug).

tests/test_onnx_import.py runs the same cases (``run_case``) as parametrized tests.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
import warnings
from typing import Any, Dict, List, Tuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DOC = os.path.join(HERE, os.pardir, "docs", "onnx.md")
BEGIN, END = "<!-- node-cases:begin -->", "<!-- node-cases:end -->"


def supported_cases() -> List[Any]:
    """The node test cases (one node each) whose operator is one load_onnx maps,
    sorted by operator and name. Constant is left out (it only feeds other ops
    their constants), and so are the ``_expanded`` cases (a function's body in
    other operators)."""
    from paskdnn.onnx_import import SUPPORTED

    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        np_err = np.seterr(all="ignore")
        try:
            from onnx.backend.test.case import node

            cases = node.collect_testcases(None)  # collects once per process: filter here
        finally:
            np.seterr(**np_err)
    seen: Dict[str, Any] = {}
    for case in cases:
        ops = [n.op_type for n in case.model.graph.node]
        if len(ops) == 1 and ops[0] in SUPPORTED and ops[0] != "Constant":
            seen.setdefault(case.name, (ops[0], case))
    return [seen[k] for k in sorted(seen, key=lambda k: (seen[k][0], k))]


def as_weights(case: Any) -> Tuple[Any, np.ndarray, List[np.ndarray]]:
    """The case's model with every graph input but the first an initializer
    holding the case's first data set; the first input's data; the expected outputs."""
    import onnx
    from onnx import numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    inputs, outputs = case.data_sets[0]
    g = model.graph
    keep = g.input[0]
    for vi, data in zip(list(g.input)[1:], inputs[1:]):
        g.initializer.append(numpy_helper.from_array(np.asarray(data), vi.name))
    others = list(g.input)[1:]
    for vi in others:
        g.input.remove(vi)
    del keep
    return model, np.asarray(inputs[0]), [np.asarray(o) for o in outputs]


def run_case(case: Any, layout: str = "NCHW", context: Any = None) -> Tuple[str, str]:
    """("pass" | "skip" | "fail", detail) for one case."""
    import paskdnn
    from paskdnn import graph as G

    model, x, expected = as_weights(case)
    if not np.issubdtype(x.dtype, np.floating):
        return "skip", f"input dtype {x.dtype} (floating-point inputs only)"
    try:
        g = paskdnn.load_onnx(model, layout=layout)
    except paskdnn.UnsupportedError as e:
        return "skip", str(e)
    try:
        runner = G.Runner(g, context, batch=g.batch)
        y = g.output_to_onnx(runner.run(g.input_from_onnx(x.astype(np.float32))))
    except Exception as e:  # noqa: BLE001 - a failure to report, whatever it is
        return "fail", f"{type(e).__name__}: {e}"
    want = expected[0].astype(np.float64)
    if y.shape != want.shape:
        return "fail", f"shape {y.shape}, expected {want.shape}"
    err = np.abs(y.astype(np.float64) - want)
    scale = max(float(np.abs(want).max()), 1e-30)
    tol = np.maximum(case.atol + case.rtol * np.abs(want), 1e-4 * scale)
    if not (err <= tol).all():
        return "fail", f"max error {err.max():.3g} (max |expected| {scale:.3g})"
    return "pass", f"max error {err.max():.2g}"


def _short(reason: str) -> str:
    reason = re.sub(r"^ONNX node .*?\((\w+)\): ", "", reason)
    reason = reason.replace("|", "\\|")
    return reason if len(reason) <= 160 else reason[:157] + "..."


def table(context: Any = None) -> Tuple[str, Dict[str, int]]:
    rows = []
    counts = {"pass": 0, "skip": 0, "fail": 0}
    for op, case in supported_cases():
        results = {lay: run_case(case, lay, context) for lay in ("NCHW", "NHWC")}
        status = results["NCHW"][0]
        if results["NHWC"][0] != status:
            status = "fail"
        counts[status] += 1
        detail = results["NCHW"][1] if status != "fail" else "; ".join(f"{k}: {v[1]}" for k, v in results.items())
        rows.append(f"| {op} | `{case.name}` | {status} | {_short(detail)} |")
    head = ("| operator | case | result (NCHW and NHWC) | detail: max error, or why it is skipped |\n"
            "|---|---|---|---|\n")
    summary = (f"{counts['pass']} pass, {counts['skip']} skipped, {counts['fail']} fail "
               f"(of {sum(counts.values())} cases; onnx {_onnx_version()}).\n\n")
    return summary + head + "\n".join(rows) + "\n", counts


def _onnx_version() -> str:
    import onnx

    return onnx.__version__


def main(argv: Any = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--check", action="store_true", help="print the table only; leave docs/onnx.md alone")
    a = ap.parse_args(argv)
    text, counts = table()
    print(text)
    if not a.check:
        with open(DOC) as f:
            doc = f.read()
        if BEGIN not in doc or END not in doc:
            print(f"{DOC} has no {BEGIN} ... {END} markers", file=sys.stderr)
            return 1
        pre, rest = doc.split(BEGIN, 1)
        _, post = rest.split(END, 1)
        with open(DOC, "w") as f:
            f.write(pre + BEGIN + "\n" + text + END + post)
    return 1 if counts["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
