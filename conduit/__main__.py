"""`python -m conduit`: the same CLI as the `conduit` console script."""

from conduit.cli.root import main

if __name__ == "__main__":
    main(prog_name="conduit")
