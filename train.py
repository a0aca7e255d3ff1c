"""Train a mixture model: ``python train.py [overrides]`` (see README.md and conf/).

The same command is installed as ``mixtures-train`` (``mixtures.cli.train_main``).
"""

from mixtures.cli import train_main

if __name__ == "__main__":
    train_main()
