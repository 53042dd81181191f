"""Training: supervised fine-tuning here; DPO/KTO/policy gradient over TRL come with the online loops."""
