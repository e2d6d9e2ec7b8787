"""Deep Memory training: the trainer protocol, the local adapter trainer, evaluation."""
