"""A parity run's verdict: passed or not at a tolerance, the first layer beyond it, and the
report ``xception-parity --report`` writes."""
from .layers import first_divergent, format_layers
from .parity import first_failing_output, format_records, run_parity, within_tolerance


class ParityResult:
    """What ``xception_mx.parity`` returns: ``passed`` (every input within ``atol`` with the
    same top-1/top-5, and with ``per_layer`` every layer within it), ``records`` (one per
    input), ``layers`` (per-layer records or ``None``), ``first_divergent_layer`` (the Keras
    name of the first layer beyond ``atol``, or ``None``), ``first_failing_output`` (for a
    model with several outputs, the first with an input beyond ``atol``), ``details``;
    ``str()`` is the
    table ``xception-parity`` prints."""

    def __init__(self, parity, atol):
        self.records, self.layers, self.details, self.atol = (
            parity.records, parity.layers, parity.details, atol)
        divergent = first_divergent(self.layers, atol) if self.layers else None
        self.first_divergent_layer = divergent.keras_layer if divergent else None
        self.passed = within_tolerance(self.records, atol) and divergent is None
        self.first_failing_output = first_failing_output(self.records, atol)
        self.max_abs = max(r.max_abs for r in self.records)

    def __bool__(self):
        return self.passed

    def __str__(self):
        table = format_records(self.records, self.atol)
        return format_layers(self.layers, self.atol) + "\n\n" + table if self.layers else table

    def report(self):
        """The JSON report's content (``--report``)."""
        return dict(self.details, atol=self.atol, passed=self.passed,
                    inputs=[r._asdict() for r in self.records],
                    layers=[r._asdict() for r in self.layers or []],
                    first_divergent_layer=self.first_divergent_layer,
                    first_failing_output=self.first_failing_output)


def check_parity(keras_path, prefix, images=(), random=0, seed=0, input_shape=None, epoch=0,
                 batch_size=8, per_layer=False, atol=1e-4):
    """Run both frameworks on the same inputs and judge them at ``atol``."""
    parity = run_parity(keras_path, prefix, images, random, seed,
                        input_shape and tuple(input_shape), epoch, batch_size, per_layer)
    return ParityResult(parity, atol)
