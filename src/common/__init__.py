"""toolcall-lab's shared package: samples, tool-call formats, metrics, models and runners."""
