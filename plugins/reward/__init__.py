"""Bradley-Terry reward models: the ``reward`` optimizer and the ``bradley_terry`` preference model."""
