"""Training: LoRA, full and QLoRA SFT, then DPO on top of an SFT run, with TRL and PEFT.

- `params`: TrainParams, SFTParams, DPOParams (over the shared `common.params.ModelSpec`);
- `run_folder`: a run's folder, resume, save and record; `devices`: device, precision, the model to train;
- `sft`, `dpo`: the two stages; `trainers`: the TRL trainers and callbacks they use;
- `training_data`: samples as token rows; `preferences`: DPO pairs; `bench`: training speed and memory;
- `cli`: `python -m common.training sft|dpo params/sft.yaml` (the older `python -m common.train` too).
"""
