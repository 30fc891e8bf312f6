"""The jobs the command line runs, as library calls: one image (``run``), many
images (``batch``), tables (``tables``) and the worker processes they use. Prints
nothing: progress goes to callbacks."""
