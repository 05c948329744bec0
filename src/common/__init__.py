"""toolcall-lab's shared package: a small core, and one sub-package per area above it.

The core, which every area uses: `samples` (the validated sample), `sources` (where samples
come from), `formats/` (the four tool-call formats), `models` (the registry and loading),
`backends` and `decoding` (generation), `schemas`, `bfcl_data` (BFCL's data, read from the
bfcl-eval wheel), `params` (parameters as validated data, the override grammar, `ModelSpec`),
`provenance`, `tracking` (W&B), `jsonio` (atomic JSON, append-only JSONL, the folder lock),
`markdown` (report formatting), `errors` and `secrets`.

The areas, each importing only the core and the areas listed before it:
`data` (datasets), `evaluation`, `training`, `bfcl` (the external benchmark), `experiments`
(what the notebooks, sweeps and the quickstart chain). The modules `evaluate`, `train`,
`sweep`, `quickstart`, `figures`, `calibrate` and `bench` here are the older command names,
kept as aliases so that recorded commands run unchanged.
"""

import logging as _logging


class _NoKernelsHubHint(_logging.Filter):
    """Drops bitsandbytes' hint to `pip install kernels`, logged when peft imports it on a CPU with AVX512-BF16.

    `kernels` would download a 4-bit matmul from the Hugging Face Hub, which this offline project
    never does; without it bitsandbytes uses its own CPU kernel, so the hint is noise that breaks
    every command's one-line error. Only that message is dropped: the logger's other records pass.
    """

    def filter(self, record: _logging.LogRecord) -> bool:
        return "from kernels-community" not in record.getMessage()


_logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_NoKernelsHubHint())
