"""Command-line front-ends; each console script is one module here with ``main(argv) -> int``."""
