"""Rules: plain Python functions ``fn(prompt, response) -> float`` used as rewards."""
