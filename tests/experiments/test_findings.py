"""Each notebook's last cell: the reference's numbers beside the run's own, from committed results."""

from __future__ import annotations

import pytest

from common.experiments.findings import FINDINGS, beside_finding
from common.experiments.notebooks import NOTEBOOKS
from common.provenance import ROOT

# each notebook's defaults, run on the embedded models (LOG.md, session 28), and older committed runs
COMMITTED = [("00_data", "reports/data/offline-default"), ("01_functiongemma", "reports/functiongemma/gemma-3-270m"),
             ("02_router", "reports/router/smollm2-135m"), ("03_full_ft_v1", "reports/full_ft_v1/cpu"),
             ("04_lora_ablation", "reports/lora_ablation/r16-all"), ("04_lora_ablation", "reports/lora_rank/r16"),
             ("05_dpo", "reports/dpo/cpu"),
             ("06_data_scale", "reports/data_scale/n160-e1"), ("06_data_scale", "reports/data_scale/n16"),
             ("07_benchmark", "reports/quickstart"),  # its default compares the headline's evaluations: no latency
             ("08_bfcl", "reports/bfcl/comparison")]


def test_every_notebook_has_a_finding():
    assert set(FINDINGS) == {p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")}


@pytest.mark.parametrize(("notebook", "folder"), COMMITTED)
def test_the_committed_runs_read_beside_their_findings(notebook, folder):
    text = beside_finding(ROOT / folder)
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert rows and FINDINGS[notebook][0] in text
    for quantity, reference, mine in rows:
        assert reference.strip() and mine.strip(" |") not in ("", "n/a"), (quantity, mine)
