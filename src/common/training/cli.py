"""Training: LoRA, full and QLoRA SFT, then DPO on top of an SFT run, with TRL and PEFT.

    python -m common.training sft params/sft.yaml                           # the CPU default
    python -m common.training sft params/sft.yaml --set limit=64 max_steps=4 --run smoke
    python -m common.training sft params/sft_kinetic.yaml                   # Qwen3-4B on a GPU
    python -m common.training dpo params/dpo.yaml                           # on top of the CPU SFT run
    accelerate launch -m common.training sft params/sft_kinetic.yaml        # several GPUs

Paths in parameters (`data`, `sft`) are read from the current directory, as in the
evaluation runner; outputs default to the project's `runs/`.

A run writes into `runs/<experiment>/<run>/`:
- `run.json`: the stage and resolved parameters (a rerun with other settings is refused);
- `checkpoints/checkpoint-N`: resumable checkpoints. A rerun of the same settings
  resumes from the last one (`--resume` insists on one, `--restart` starts over);
- `adapter/` (LoRA, QLoRA: PEFT format, loadable by transformers and by vLLM's
  `--lora-modules`) or `model/` (full fine-tuning), and `merged/` when `merge: true`;
- `history.jsonl`: every logged line as it came (loss, eval loss, token accuracy,
  learning rate, entropy, grad norm; for DPO the rewards and preference accuracy);
- `results.json`: parameters, data summary, trainable parameters, tokens/s, peak
  memory (this invocation's, and `invocations`: every one that trained the weights, a
  killed one counted up to the checkpoint resumed from), final losses and provenance;
  `pairs.jsonl` for DPO.
W&B receives the same config and curves (offline unless a key and `wandb: online`).
"""

from __future__ import annotations

from typing import Any

from common.errors import ArgumentParser, cli
from common.params import add_set_argument, load_params, overrides_of
from common.training.dpo import train_dpo
from common.training.params import FROM_SFT, STAGES
from common.training.sft import train_sft


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = ArgumentParser(prog="python -m common.training", description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=sorted(STAGES), help="sft, or dpo on top of an SFT run")
    parser.add_argument("params", nargs="*", help="YAML parameter files, merged in order")
    add_set_argument(parser, STAGES)
    parser.epilog += (f"\n\nDPO takes {', '.join(sorted(FROM_SFT))} from the SFT run it continues (setting them "
                      "is refused).")
    parser.add_argument("--run", help="run name (runs/<experiment>/<run>)")
    parser.add_argument("--out", help="output folder")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue from the last checkpoint (fail if none)")
    group.add_argument("--restart", action="store_true", help="delete this run's folder and start over")
    args = parser.parse_args(argv)
    overrides = overrides_of(args)
    overrides |= {k: v for k, v in (("run", args.run), ("out", args.out)) if v is not None}
    if args.resume or args.restart:
        overrides["resume"] = "always" if args.resume else "never"
    params = load_params(STAGES[args.stage], args.params, overrides)
    return (train_sft if args.stage == "sft" else train_dpo)(params)


if __name__ == "__main__":
    cli(main)
