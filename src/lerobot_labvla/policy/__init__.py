"""The LabVLA policy: configuration, model, processors, FAST tokenizer."""
