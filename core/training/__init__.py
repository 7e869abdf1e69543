"""LoRA fine-tuning of CSM in a worker process: run folders, the status/metrics protocol,
data preparation (cached Mimi codes), the training loop, adapter export."""
