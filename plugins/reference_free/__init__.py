"""Built-in ORPO and CPO optimizers: preference optimisation without a reference model."""
