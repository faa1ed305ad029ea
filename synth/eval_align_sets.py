"""`microturn eval-align` with a generated truth set: the CLI side of pipeline.tools.eval_align (pipeline/ does not
import synth).

    microturn eval-align --aligner pocketsphinx --mode text --connected

With `--connected` (and no `--input`) the connected-speech truth set of ``synth.connected`` (two espeak-ng voices
speaking whole sentences, true word starts from espeak-ng's word events; `--count` conversations, `--seed`) is
written to a temporary directory and measured; otherwise the arguments go to pipeline.tools.eval_align unchanged.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence

from pipeline.tools.eval_align import build_parser
from pipeline.tools.eval_align import eval_align_main as measure


def eval_align_main(argv: Sequence[str]) -> int:
    """See the module docstring. Returns the exit status."""
    argv = list(argv)
    args, _ = build_parser().parse_known_args(argv)
    if not args.connected or args.input:
        return measure(argv)
    from synth.connected import make_connected_bundles

    with tempfile.TemporaryDirectory(prefix="microturn-eval-align-connected-") as tmp:
        make_connected_bundles(tmp, count=args.count, seed=args.seed)
        return measure([*argv, "--input", tmp])
